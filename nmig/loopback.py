"""Client-side settings applied before a client connects: the trusted CAs, and the relaxation the loopback
emulators need when they serve plain HTTP.

Without --tls the emulators serve plain HTTP on 127.0.0.1. The legacy client's OAuth layer (oauthlib)
refuses plain-http token endpoints unless OAUTHLIB_INSECURE_TRANSPORT is set; nmig sets it for the current
process, and for child processes it starts, only when the API address in the token is a plain-http loopback
address, so a real service, and an emulator serving HTTPS, are reached with the usual checks.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlparse

from nmig.secrets import api_address
from nmig.trust import check_server_certificate, share_ca_bundle

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
    """Set in os.environ what the clients need before connecting: a CA file given in one of
    REQUESTS_CA_BUNDLE / SSL_CERT_FILE shared with the clients that read the other (nmig/trust.py), and the
    plain-http relaxation when `api_token` names a plain-http loopback address. An https server whose
    certificate these CAs do not accept is NmigError here, in one line (the clients would retry it)."""
    share_ca_bundle()
    address = api_address(api_token) if api_token else None
    if not address:
        return
    if urlparse(address).scheme == "http" and is_loopback_url(address):
        os.environ.update(LOOPBACK_CLIENT_ENV)
    check_server_certificate(address)
