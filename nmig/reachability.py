"""Bounded connection attempts: an unreachable service is one line within `--timeout` seconds, not a hang.

The official clients retry a refused or silent connection for minutes (the legacy client 60 s per call, its
calls retried again; neptune-query without end), and say nothing meanwhile. Before a command starts its
work, nmig opens one TCP connection to the address the API token names (or to the HTTP(S) proxy the
environment names for it), retrying for at most the timeout; failing that, it stops with one line saying
what it tried. A service that goes away midway is left to the clients' own retries.
"""

from __future__ import annotations

import socket
import time
import urllib.request
from urllib.parse import urlparse

from nmig.errors import NmigError
from nmig.secrets import api_address

DEFAULT_TIMEOUT_S = 30.0
# Set by the command line's --timeout (nmig.cli), read by require_reachable.
timeout_s = DEFAULT_TIMEOUT_S


def _endpoint(url: str) -> tuple[str, int, str]:
    """(host, port, what) that a connection to `url` goes to first: the proxy when one applies."""
    parsed = urlparse(url)
    scheme = parsed.scheme or "https"
    host = parsed.hostname or ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(scheme)
    if proxy and host and not urllib.request.proxy_bypass(host):
        proxied = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        if proxied.hostname:
            return proxied.hostname, proxied.port or (443 if proxied.scheme == "https" else 80), f"the proxy {proxied.hostname}:{proxied.port or 80} for {url}"
    return host, parsed.port or (443 if scheme == "https" else 80), url


def require_reachable(api_token: str | None, service: str, seconds: float | None = None) -> None:
    """NmigError unless a TCP connection to the service of `api_token` opens within `seconds` (default: the
    --timeout given). A token naming no address is left to the client, which says so itself."""
    address = api_address(api_token) if api_token else None
    if not address:
        return
    host, port, shown = _endpoint(address)
    if not host:
        return
    limit = timeout_s if seconds is None else seconds
    deadline = time.monotonic() + limit
    delay = 0.25
    while True:
        remaining = deadline - time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=max(0.1, min(remaining, 10.0))):
                return
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            if time.monotonic() + delay >= deadline:
                raise NmigError(
                    f"cannot reach the {service} service at {shown} within {limit:g} s ({why}); check the address in "
                    "the API token, the network and any proxy (--timeout SECONDS for a slow link)"
                ) from None
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
