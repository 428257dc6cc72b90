"""The HS256 tokens both emulators issue (nmig/emulators/jwt.py), on plain data."""

from __future__ import annotations

import time

import pytest

from nmig.emulators import jwt

KEY = b"k" * 32


def _refusal(token: str, kind: str = "Bearer", key: bytes = KEY) -> jwt.TokenError:
    with pytest.raises(jwt.TokenError) as refused:
        jwt.verify(key, token, kind)
    return refused.value


def test_a_signed_token_verifies_and_carries_its_claims() -> None:
    claims = {"typ": "Bearer", "exp": time.time() + 60, "iss": "http://127.0.0.1:1/realm", "sub": "u"}
    assert jwt.verify(KEY, jwt.sign(KEY, claims), "Bearer") == claims


def test_wrong_key_kind_shape_or_time_is_refused() -> None:
    token = jwt.sign(KEY, {"typ": "Bearer", "exp": time.time() + 60})
    assert str(_refusal(token, key=b"x" * 32)) == "bad signature"
    assert str(_refusal(token, kind="Refresh")) == "not a Refresh token"
    header, payload, signature = token.split(".")
    assert str(_refusal(f"{header}.{payload}x.{signature}")) == "bad signature"  # a payload edited after signing
    assert str(_refusal("not-a-token")).startswith("malformed token")
    assert not _refusal(jwt.sign(KEY, {"typ": "Bearer"})).expired  # no expiry at all: invalid, not expired
    expired = _refusal(jwt.sign(KEY, {"typ": "Bearer", "exp": time.time() - 1}))
    assert expired.expired and str(expired) == "token expired"
