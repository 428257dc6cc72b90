"""Keeping API tokens out of logs, bundles, reports and error messages."""

from __future__ import annotations

import base64
import json
import re

# Neptune API tokens are base64-encoded JSON; the client also accepts them with surrounding whitespace.
_TOKEN_LIKE = re.compile(r"eyJ[A-Za-z0-9+/=_-]{20,}")


def redact(text: str, *tokens: str | None) -> str:
    """Replace every known token, and anything shaped like a Neptune token or JWT, with a placeholder."""
    for token in tokens:
        if token:
            text = text.replace(token, "<redacted>")
    return _TOKEN_LIKE.sub("<redacted>", text)


def api_address(api_token: str) -> str | None:
    """The API address a Neptune API token names (`api_address`, or `api_url` in older tokens)."""
    try:
        padded = api_token.strip() + "=" * (-len(api_token.strip()) % 4)
        claims = json.loads(base64.b64decode(padded).decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(claims, dict):
        return None
    address = claims.get("api_address") or claims.get("api_url")
    return address if isinstance(address, str) else None


def make_api_token(api_address: str, api_key: str) -> str:
    """A token in the standard Neptune shape: base64 of {"api_address", "api_url", "api_key"}."""
    payload = {"api_address": api_address, "api_url": api_address, "api_key": api_key}
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")
