"""Which certificate authorities the Neptune clients trust for HTTPS: one setting that reaches all of them.

Self-hosted Neptune is often served with a certificate from the site's private CA. The three clients nmig
drives each find their trust store in their own way, and none of them takes a CA file as an argument from
nmig's side:

* neptune 1.x (export) talks through requests: its sessions keep `verify=True` (neptune/internal/backends/
  hosted_client.py:83 and the OAuth session in neptune/common/oauth.py:118, from ssl_verify() in
  neptune/internal/backends/utils.py:248), and requests then takes REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE
  from the environment (requests/sessions.py:857), else certifi. It never
  reads SSL_CERT_FILE. The OAuth refresh passes `verify=self.session.verify` (neptune/common/oauth.py:84),
  True as well, so the same variable applies there.
* neptune-scale (import) builds neptune_api clients with `verify_ssl` a bool from NEPTUNE_VERIFY_SSL
  (neptune_scale/net/api_client.py:191, passed on at :120 and :155; neptune_api/client.py:126 and :311 hand
  it to httpx), and its file uploads open bare `httpx.AsyncClient`s (neptune_scale/sync/storage/s3.py:32
  and :75, gcs.py:34); httpx with `verify=True` reads SSL_CERT_FILE (or SSL_CERT_DIR), else certifi
  (httpx/_config.py:33-40), never REQUESTS_CA_BUNDLE. Azure uploads (neptune_scale/sync/storage/
  azure_storage.py:4) go through azure-core's requests transport, whose session keeps `trust_env` on
  (azure/core/pipeline/transport/_requests_basic.py:294) and which passes `verify=True` per request
  (_requests_asyncio.py:172): REQUESTS_CA_BUNDLE.
* neptune-query (verify) builds its client with `verify_ssl=NEPTUNE_VERIFY_SSL.get()`, a bool
  (neptune_query/internal/api_utils.py:43): httpx again, SSL_CERT_FILE.

So a CA given in only one of the two variables would reach only some of the clients. nmig makes it reach all:
`--ca-bundle FILE` sets both variables to FILE for the process (and the processes it starts), and a CA
given in one variable only is copied to the other (`share_ca_bundle`). Both variables replace the default
trust store, as they do for the clients themselves: the file must hold every CA needed, including the one
of the object storage the 3.x server hands out signed URLs for.

An untrusted server certificate is not a clear error in any of the clients: each takes it for a connection
failure and retries it (neptune 1.x re-raises it as NeptuneSSLVerificationError only when the cause's text
says "CertificateError", neptune/common/backends/utils.py:99, which the urllib3 2.x wrapping does not; the
others back off for minutes, e.g. neptune_query/internal/retrieval/retry.py:170). So before a client starts,
`check_server_certificate` makes one TLS handshake with the server under the same trust and proxy settings
and turns a refused certificate into one line.

Proxies need nothing from nmig: requests (trust_env) and httpx (trust_env, no explicit transport) both read
HTTPS_PROXY / HTTP_PROXY / NO_PROXY from the environment (requests/utils.py:810 and :873,
httpx/_client.py:685 and httpx/_utils.py:30).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from nmig.errors import NmigError

REQUESTS_VARIABLE = "REQUESTS_CA_BUNDLE"
OPENSSL_VARIABLE = "SSL_CERT_FILE"
OPENSSL_DIR_VARIABLE = "SSL_CERT_DIR"


def check_ca_bundle(path: str | Path, given_as: str = "") -> Path:
    """`path` if it is a PEM file that OpenSSL loads as CA certificates; NmigError (one line, starting with
    `given_as`, e.g. "SSL_CERT_FILE=") otherwise."""
    path = Path(path)
    if not path.is_file():
        raise NmigError(f"{given_as}{path}: no such file")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise NmigError(f"{given_as}{path}: not a PEM file of CA certificates ({exc})") from None
    return path


def use_ca_bundle(path: str | Path) -> None:
    """Trust exactly the CAs in `path` for HTTPS in every client (the `--ca-bundle` option)."""
    resolved = str(check_ca_bundle(path).resolve())
    os.environ[REQUESTS_VARIABLE] = resolved
    os.environ[OPENSSL_VARIABLE] = resolved


def share_ca_bundle() -> None:
    """When the environment gives CAs in one family's variable only, give them to the clients reading the
    other. Variables set on both sides are left as they are, even when they differ: that is a deliberate
    setting. Nothing is checked here (a plain-http target needs none of it); check_server_certificate does."""
    requests_bundle = os.environ.get(REQUESTS_VARIABLE) or os.environ.get("CURL_CA_BUNDLE")
    httpx_bundle = os.environ.get(OPENSSL_VARIABLE) or os.environ.get(OPENSSL_DIR_VARIABLE)
    if requests_bundle and not httpx_bundle:
        # requests takes a file or a folder of hashed certificates; httpx has a variable for each
        os.environ[OPENSSL_DIR_VARIABLE if os.path.isdir(requests_bundle) else OPENSSL_VARIABLE] = requests_bundle
    elif httpx_bundle and not requests_bundle:
        os.environ[REQUESTS_VARIABLE] = httpx_bundle


def _causes(exc: BaseException) -> list[BaseException]:
    """`exc` and what it wraps: the exception chain plus the wrapped errors of urllib3 (`reason`) and of the
    clients (an exception in `args`), bounded."""
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending and len(found) < 50:
        current = pending.pop()
        if any(current is seen for seen in found):
            continue
        found.append(current)
        for inner in (current.__cause__, current.__context__, getattr(current, "reason", None), *current.args):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return found


def untrusted_certificate_message(exc: BaseException, url: str | None, trusted: str | None = None) -> str | None:
    """One line for a failure caused by a server certificate the trust store does not accept; None for any
    other failure. Names the host of `url` when known, and `trusted` (what the client trusted) when given."""
    from urllib.parse import urlsplit

    reason = None
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or "certificate verify failed"
            break
        if "CERTIFICATE_VERIFY_FAILED" in str(cause):
            reason = "certificate verify failed"
    if reason is None:
        return None
    host = (urlsplit(url).netloc if url else "") or "the server"
    return (
        f"the certificate of {host} is not trusted{' by ' + trusted if trusted else ''} ({reason}); if it is signed by a private CA, "
        "pass that CA's certificate (PEM) with --ca-bundle FILE or set REQUESTS_CA_BUNDLE / SSL_CERT_FILE"
    )


def _trust_stores() -> list[tuple[str, ssl.SSLContext]]:
    """The trust stores the clients of this process verify with, each named by the setting that selects it:
    one, unless the requests-side and the httpx-side variables name different places. NmigError (one line)
    for a variable naming something that holds no CA certificates."""
    import certifi

    def chosen(names: tuple[str, ...]) -> tuple[str, str]:
        name = next((name for name in names if os.environ.get(name)), None)
        return (f"{name}={os.environ[name]}", os.environ[name]) if name else ("the default CAs (certifi)", certifi.where())

    requests_store = chosen((REQUESTS_VARIABLE, "CURL_CA_BUNDLE"))
    # httpx reads SSL_CERT_DIR only when SSL_CERT_FILE is unset (httpx/_config.py:34-37)
    httpx_store = chosen((OPENSSL_VARIABLE, OPENSSL_DIR_VARIABLE))
    stores = [requests_store] if httpx_store[1] == requests_store[1] else [requests_store, httpx_store]
    contexts = []
    for label, location in stores:
        try:
            if os.path.isdir(location):
                contexts.append((label, ssl.create_default_context(capath=location)))
            else:
                contexts.append((label, ssl.create_default_context(cafile=location)))
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise NmigError(f"{label}: not a readable PEM file of CA certificates ({exc})") from None
    return contexts


def check_server_certificate(url: str, timeout_s: float = 20.0) -> None:
    """For an https `url`: NmigError (one line) when the server's certificate is not trusted by the CAs the
    clients will use; through the proxy the environment names, as the clients go. Anything else (the server
    unreachable, an HTTP error) is left for the client to report in its own way."""
    from urllib.parse import urlsplit

    if urlsplit(url).scheme != "https":
        return
    import httpx

    for label, context in _trust_stores():
        try:
            with httpx.Client(verify=context, trust_env=True, timeout=timeout_s) as client:
                client.head(url)
        except httpx.HTTPError as exc:
            message = untrusted_certificate_message(exc, url, label)
            if message:
                raise NmigError(message) from None
            return
