"""API-key exchange and JWT access/refresh tokens, the way both neptune-api clients expect them.

The clients decode the access token without checking its signature and read `exp` (when to refresh), `azp`
(client id) and `iss` (the token endpoint is `<iss>/protocol/openid-connect/token`). The emulator signs its
tokens with HMAC-SHA256 under a per-data-folder secret and checks signature and expiry on every API call.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from nmig.emulators import jwt
from nmig.emulators.jwt import CLIENT_ID, REALM_PATH

DISCOVERY_PATH = REALM_PATH + "/.well-known/openid-configuration"
AUTHORIZE_PATH = REALM_PATH + "/protocol/openid-connect/auth"
USERNAME = "emulator-user"


@dataclass
class TokenAuthority:
    """Mints and checks tokens. `api_key` is what the API token carries; `secret` signs the JWTs."""

    api_key: str
    secret: bytes
    issuer: str  # base URL + REALM_PATH
    access_ttl_s: int = 3600

    def _mint(self, kind: str, ttl_s: int) -> str:
        now = int(time.time())
        claims = {"iss": self.issuer, "azp": CLIENT_ID, "sub": USERNAME, "typ": kind, "iat": now, "exp": now + ttl_s,
                  "jti": secrets.token_hex(8)}
        return jwt.sign(self.secret, claims)

    def _valid(self, token: str, kind: str) -> bool:
        try:
            jwt.verify(self.secret, token, kind)
        except jwt.TokenError:
            return False
        return True

    def exchange(self, api_token: str) -> dict[str, str] | None:
        """The oauth-token answer for a valid API token (the clients send the whole token), None when wrong."""
        if not self.check_api_key(api_token):
            return None
        return {
            "accessToken": self._mint("access", self.access_ttl_s),
            "refreshToken": self._mint("refresh", 30 * 24 * 3600),
            "username": USERNAME,
        }

    def refresh(self, refresh_token: str) -> dict[str, str] | None:
        """The OpenID token-endpoint answer for a valid refresh token."""
        if not self._valid(refresh_token, "refresh"):
            return None
        return {
            "access_token": self._mint("access", self.access_ttl_s),
            "refresh_token": self._mint("refresh", 30 * 24 * 3600),
            "token_type": "Bearer",
            "expires_in": str(self.access_ttl_s),
        }

    def check_bearer(self, authorization: str | None) -> bool:
        if not authorization or not authorization.startswith("Bearer "):
            return False
        return self._valid(authorization[len("Bearer "):].strip(), "access")

    def check_api_key(self, api_token: bytes | str) -> bool:
        """Whether `api_token` (a whole Neptune API token, or its bare key) carries this emulator's key."""
        value = api_token.decode("utf-8", "replace") if isinstance(api_token, bytes) else api_token
        value = value.strip()
        try:
            claims = json.loads(base64.b64decode(value + "=" * (-len(value) % 4)))
            if isinstance(claims, dict) and isinstance(claims.get("api_key"), str):
                value = claims["api_key"]
        except ValueError:
            pass  # not a token: compare it as a bare key
        return hmac.compare_digest(value.encode(), self.api_key.encode())
