"""JWT access and refresh tokens for the legacy emulator, signed with HMAC-SHA256 from the standard library.

The client decodes access tokens without verifying them and reads `exp` (when to refresh), `iss` (the realm
URL it derives the refresh endpoint from: `<iss>/protocol/openid-connect/token`) and `azp` (its OAuth client
id). The emulator verifies signature and expiry on every protected request, so an expired token is refused
as a real service would refuse it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

OAUTH_CLIENT_ID = "neptune-cli"
# Assumption: refresh tokens outlive access tokens by far (Keycloak's usual default is 30 min or more); a
# day keeps any rehearsal inside one refresh-token lifetime.
REFRESH_TOKEN_TTL_S = 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class TokenIssuer:
    def __init__(self, realm_url: str, access_ttl_s: float) -> None:
        if access_ttl_s <= 0:
            raise ValueError("token_ttl must be positive")
        self.realm_url = realm_url
        self.access_ttl_s = access_ttl_s
        self._key = secrets.token_bytes(32)

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def issue(self, subject: str) -> dict[str, Any]:
        """A fresh access + refresh token pair."""
        now = time.time()
        common = {"iss": self.realm_url, "azp": OAUTH_CLIENT_ID, "sub": subject, "iat": int(now)}
        access = self._sign(
            {**common, "typ": "Bearer", "exp": now + self.access_ttl_s, "jti": secrets.token_hex(8)}
        )
        refresh = self._sign(
            {**common, "typ": "Refresh", "exp": now + REFRESH_TOKEN_TTL_S, "jti": secrets.token_hex(8)}
        )
        return {"access": access, "refresh": refresh, "expires_in": self.access_ttl_s}

    def verify(self, token: str, kind: str) -> dict[str, Any]:
        """The claims of a token we issued of `kind` ("Bearer" or "Refresh"); raises TokenError otherwise."""
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                raise TokenError("bad signature")
            claims = json.loads(_unb64(payload))
        except (ValueError, TypeError) as exc:
            raise TokenError(f"malformed token: {type(exc).__name__}") from None
        if not isinstance(claims, dict) or claims.get("typ") != kind:
            raise TokenError(f"not a {kind} token")
        if float(claims.get("exp", 0)) <= time.time():
            raise TokenError("token expired", expired=True)
        return claims
