"""Client-side settings that the loopback emulators need, applied only when the token points at loopback.

The emulators serve plain HTTP on 127.0.0.1. The legacy client's OAuth layer (oauthlib) refuses plain-http
token endpoints unless OAUTHLIB_INSECURE_TRANSPORT is set; nmig sets it for the current process, and for
child processes it starts, only when the API address in the token is a loopback address, so a real
service is always reached over HTTPS with the usual checks.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

from nmig.secrets import api_address

LOOPBACK_CLIENT_ENV = {"OAUTHLIB_INSECURE_TRANSPORT": "1"}


def is_loopback_url(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def prepare_client_env(api_token: str | None) -> None:
    """Set the loopback-only client settings in os.environ when `api_token` names a loopback address."""
    address = api_address(api_token) if api_token else None
    if address and is_loopback_url(address):
        os.environ.update(LOOPBACK_CLIENT_ENV)
