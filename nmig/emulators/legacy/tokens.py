"""The legacy emulator's access and refresh tokens (JWTs, see nmig/emulators/jwt.py).

The client derives its refresh endpoint from `iss`: `<iss>/protocol/openid-connect/token`.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from nmig.emulators import jwt
from nmig.emulators.jwt import TokenError as TokenError  # raised by verify(); the server catches it from here

# Assumption: refresh tokens outlive access tokens by far (Keycloak's usual default is 30 min or more); a
# day keeps any rehearsal inside one refresh-token lifetime.
REFRESH_TOKEN_TTL_S = 24 * 3600


class TokenIssuer:
    def __init__(self, realm_url: str, access_ttl_s: float) -> None:
        if access_ttl_s <= 0:
            raise ValueError("token_ttl must be positive")
        self.realm_url = realm_url
        self.access_ttl_s = access_ttl_s
        self._key = secrets.token_bytes(32)

    def issue(self, subject: str) -> dict[str, Any]:
        """A fresh access + refresh token pair."""
        now = time.time()
        common = {"iss": self.realm_url, "azp": jwt.CLIENT_ID, "sub": subject, "iat": int(now)}
        access = jwt.sign(
            self._key, {**common, "typ": "Bearer", "exp": now + self.access_ttl_s, "jti": secrets.token_hex(8)}
        )
        refresh = jwt.sign(
            self._key, {**common, "typ": "Refresh", "exp": now + REFRESH_TOKEN_TTL_S, "jti": secrets.token_hex(8)}
        )
        return {"access": access, "refresh": refresh, "expires_in": self.access_ttl_s}

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        """The claims of a token we issued of `kind` ("Bearer" or "Refresh"); raises TokenError otherwise."""
        return jwt.verify(self._key, token, kind)
