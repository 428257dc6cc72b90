"""Export, import and verify over HTTPS with a private CA, as self-hosted sites serve Neptune: the CA given
in the environment or with --ca-bundle, an unknown CA refused in one line, and the same path through an HTTP
proxy named in the environment. Every command runs as a user runs it, in its own process with its own
environment; both emulators serve HTTPS (--tls) with a CA of their own."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nmig.emulators.harness import emulator_process  # noqa: E402
from nmig.emulators.http import EmulatorInfo  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "data" / "legacy_all_types.json"
SOURCE_PROJECT = "acme/all-types"
# What a child process must not inherit from whoever runs the tests: trust, proxy and token settings are
# exactly what each test sets.
_CLEARED = {
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY",
    "ALL_PROXY", "NO_PROXY", "OAUTHLIB_INSECURE_TRANSPORT", "NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT",
}


def nmig(*args: str, token: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    child_env = {name: value for name, value in os.environ.items() if name.upper() not in _CLEARED}
    child_env.update(env or {})
    child_env["NEPTUNE_API_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "nmig", *args], env=child_env, capture_output=True, text=True, timeout=240, check=False
    )


def ok(completed: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert completed.returncode == 0, completed.stderr[-3000:] + completed.stdout[-3000:]
    return completed


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    with emulator_process("legacy", "--fixture", str(FIXTURE), "--tls") as process:
        yield process.info


@pytest.fixture(scope="module")
def neptune3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    data_dir = tmp_path_factory.mktemp("neptune3")
    with emulator_process("neptune3", "--tls", "--data-dir", str(data_dir)) as process:
        yield process.info


def test_the_emulators_serve_https_with_their_own_ca_and_need_no_plain_http_relaxation(
    legacy: EmulatorInfo, neptune3: EmulatorInfo
) -> None:
    for info in (legacy, neptune3):
        assert info.url.startswith("https://127.0.0.1:")
        assert info.ca_file and Path(info.ca_file).is_file()
        assert info.env == {}  # no OAUTHLIB_INSECURE_TRANSPORT: the token endpoint is https
    assert Path(legacy.ca_file or "").read_bytes() != Path(neptune3.ca_file or "").read_bytes()



def test_the_emulator_certificate_names_the_loopback_addresses_and_is_reused(tmp_path: Path) -> None:
    import ipaddress

    from cryptography import x509

    from nmig.emulators.tls import ensure_certificates

    first = ensure_certificates(tmp_path)
    cert = x509.load_pem_x509_certificate(first.cert_file.read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    assert first.key_file.stat().st_mode & 0o077 == 0
    ca_pem = first.ca_file.read_bytes()
    assert ensure_certificates(tmp_path).ca_file.read_bytes() == ca_pem
    assert not list(tmp_path.glob("*ca*key*"))  # the CA's private key is never written
