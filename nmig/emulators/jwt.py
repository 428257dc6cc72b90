"""HS256 JSON Web Tokens, the access and refresh tokens of both emulators (standard library only).

The clients decode an access token without checking its signature and read `exp` (when to refresh), `iss` (the
realm URL their refresh endpoint derives from) and `azp` (their OAuth client id). The emulators check
signature, kind (`typ`) and expiry on every protected request, so an expired token is refused as a real
service would refuse it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

# The OpenID realm both emulators name as their tokens' issuer (`iss` = base URL + REALM_PATH); the clients
# refresh their tokens at the realm's TOKEN_PATH.
REALM_PATH = "/auth/realms/neptune"
TOKEN_PATH = REALM_PATH + "/protocol/openid-connect/token"
# The OAuth client id (`azp`) the tokens are issued to: the same for the 2.x and the 3.x clients.
CLIENT_ID = "neptune-cli"

_HEADER = json.dumps({"alg": "HS256", "typ": "JWT"})


class TokenError(Exception):
    def __init__(self, message: str, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(key: bytes, header: str, payload: str) -> bytes:
    return hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()


def sign(key: bytes, claims: dict[str, Any]) -> str:
    header, payload = _b64(_HEADER.encode()), _b64(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{payload}.{_b64(_signature(key, header, payload))}"


def verify(key: bytes, token: str, kind: str) -> dict[str, Any]:
    """The claims of a token signed with `key` whose `typ` is `kind`; raises TokenError otherwise
    (with `expired` set when only its time is up)."""
    try:
        header, payload, signature = token.split(".")
        if not hmac.compare_digest(_signature(key, header, payload), _unb64(signature)):
            raise TokenError("bad signature")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError) as exc:
        raise TokenError(f"malformed token: {type(exc).__name__}") from None
    if not isinstance(claims, dict) or claims.get("typ") != kind:
        raise TokenError(f"not a {kind} token")
    expires = claims.get("exp")
    if isinstance(expires, bool) or not isinstance(expires, int | float):
        raise TokenError("token without an expiry")
    if expires <= time.time():  # RFC 7519: valid only before `exp`
        raise TokenError("token expired", expired=True)
    return claims
