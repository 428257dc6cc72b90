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

from connect_proxy import connect_proxy  # noqa: E402

from nmig.emulators.harness import emulator_process  # noqa: E402
from nmig.emulators.http import EmulatorInfo  # noqa: E402

FIXTURE = Path(__file__).resolve().parent / "data" / "legacy_all_types.json"
SOURCE_PROJECT = "acme/all-types"
# What a child process must not inherit from whoever runs the tests: trust, proxy and token settings are
# exactly what each test sets.
_CLEARED = {
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY",
    "ALL_PROXY", "NO_PROXY", "OAUTHLIB_INSECURE_TRANSPORT", "NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT",
    "NEPTUNE_LEGACY_API_TOKEN",
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


@pytest.mark.slow
def test_export_import_verify_with_the_ca_in_the_environment(
    legacy: EmulatorInfo, neptune3: EmulatorInfo, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    # Each client family's own variable, and each the other family's: nmig hands the one given to both.
    ok(nmig("export", "--project", SOURCE_PROJECT, "--out", str(bundle), "--quiet", token=legacy.api_token,
            env={"REQUESTS_CA_BUNDLE": legacy.ca_file or ""}))
    ok(nmig("import", str(bundle), "--project", "demo/tls-env", "--quiet", token=neptune3.api_token,
            env={"SSL_CERT_FILE": neptune3.ca_file or ""}))
    # verify exits 0 only when the target matches the bundle
    ok(nmig("verify", str(bundle), "--project", "demo/tls-env", "--quiet", token=neptune3.api_token,
            env={"REQUESTS_CA_BUNDLE": neptune3.ca_file or ""}))


@pytest.fixture(scope="module")
def option_bundle(legacy: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle exported over HTTPS with --ca-bundle (and no CA in the environment)."""
    bundle = tmp_path_factory.mktemp("option") / "bundle"
    ok(nmig("export", "--project", SOURCE_PROJECT, "--out", str(bundle), "--quiet", "--ca-bundle", legacy.ca_file or "",
            token=legacy.api_token))
    return bundle


@pytest.mark.slow
def test_export_import_verify_with_the_ca_bundle_option(neptune3: EmulatorInfo, option_bundle: Path) -> None:
    ok(nmig("import", str(option_bundle), "--project", "demo/tls-option", "--quiet", "--ca-bundle",
            neptune3.ca_file or "", token=neptune3.api_token))
    ok(nmig("verify", str(option_bundle), "--project", "demo/tls-option", "--quiet", "--ca-bundle",
            neptune3.ca_file or "", token=neptune3.api_token))


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["azure", "gcp"])  # "aws", the default, is what the other tests use
def test_file_uploads_of_each_storage_provider_over_https(provider: str, option_bundle: Path) -> None:
    # Each provider's upload code in neptune-scale takes its trust store its own way: Azure's through
    # azure-core's requests transport (REQUESTS_CA_BUNDLE), GCS's through a bare httpx client (SSL_CERT_FILE).
    with emulator_process("neptune3", "--tls", "--storage-provider", provider) as process:
        info = process.info
        project = f"demo/tls-{provider}"
        ok(nmig("import", str(option_bundle), "--project", project, "--quiet", "--ca-bundle", info.ca_file or "",
                token=info.api_token))
        # verify compares every file's size and hash with the bundle
        ok(nmig("verify", str(option_bundle), "--project", project, "--quiet", "--ca-bundle", info.ca_file or "",
                token=info.api_token))


@pytest.mark.slow
def test_migrate_with_one_bundle_holding_both_cas(legacy: EmulatorInfo, neptune3: EmulatorInfo, tmp_path: Path) -> None:
    # One --ca-bundle serves both servers (and the export child migrate starts), so it holds both CAs.
    both = tmp_path / "both-cas.pem"
    both.write_bytes(Path(legacy.ca_file or "").read_bytes() + Path(neptune3.ca_file or "").read_bytes())
    bundle = tmp_path / "bundle"
    ok(nmig("migrate", "--from", SOURCE_PROJECT, "--to", "demo/tls-migrate", "--out", str(bundle), "--quiet",
            "--ca-bundle", str(both), token=neptune3.api_token, env={"NEPTUNE_LEGACY_API_TOKEN": legacy.api_token}))
    ok(nmig("verify", str(bundle), "--project", "demo/tls-migrate", "--quiet", "--ca-bundle", str(both),
            token=neptune3.api_token))


@pytest.mark.slow
def test_an_unknown_ca_is_one_line_naming_the_host(
    legacy: EmulatorInfo, neptune3: EmulatorInfo, option_bundle: Path, tmp_path: Path
) -> None:
    bundle = option_bundle
    other_ca = {"SSL_CERT_FILE": legacy.ca_file or ""}  # a CA, but not the one that signed the 3.x server's certificate
    commands = [
        (legacy, ["export", "--project", SOURCE_PROJECT, "--out", str(tmp_path / "again"), "--quiet"], {}),
        (neptune3, ["import", str(bundle), "--project", "demo/tls-unknown", "--quiet"], {}),
        (neptune3, ["verify", str(bundle), "--project", "demo/tls-unknown", "--quiet"], other_ca),
    ]
    for info, args, env in commands:
        completed = nmig(*args, token=info.api_token, env=env)
        host = info.url.removeprefix("https://")
        lines = completed.stderr.strip().splitlines()
        assert completed.returncode != 0, (args[0], completed.stderr)
        assert len(lines) == 1 and "Traceback" not in completed.stderr, (args[0], completed.stderr)
        assert lines[0].startswith("nmig: error: the certificate of " + host + " is not trusted"), lines
        assert "--ca-bundle" in lines[0]
        assert info.api_token not in completed.stderr + completed.stdout


@pytest.mark.slow
def test_the_whole_path_through_a_proxy_named_in_the_environment(
    legacy: EmulatorInfo, neptune3: EmulatorInfo, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    legacy_target, neptune3_target = (info.url.removeprefix("https://") for info in (legacy, neptune3))
    with connect_proxy() as (proxy_url, stats):
        # NO_PROXY set empty on purpose: many environments list loopback there, which would bypass the proxy.
        via_proxy = {"HTTPS_PROXY": proxy_url, "https_proxy": proxy_url, "NO_PROXY": "", "no_proxy": ""}
        ok(nmig("export", "--project", SOURCE_PROJECT, "--out", str(bundle), "--quiet", "--ca-bundle",
                legacy.ca_file or "", token=legacy.api_token, env=via_proxy))
        connects, refused = stats.snapshot()
        assert connects[legacy_target] >= 1 and not refused, (connects, refused)
        stats.reset()
        ok(nmig("import", str(bundle), "--project", "demo/tls-proxy", "--quiet", "--ca-bundle", neptune3.ca_file or "",
                token=neptune3.api_token, env=via_proxy))
        connects, refused = stats.snapshot()
        assert connects[neptune3_target] >= 1 and not refused, (connects, refused)
        stats.reset()
        ok(nmig("verify", str(bundle), "--project", "demo/tls-proxy", "--quiet", "--ca-bundle", neptune3.ca_file or "",
                token=neptune3.api_token, env=via_proxy))
        connects, refused = stats.snapshot()
        assert connects[neptune3_target] >= 1 and not refused, (connects, refused)
        stats.reset()
        # NO_PROXY naming the server: the clients go straight to it, the proxy sees nothing.
        bypass = {**via_proxy, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
        ok(nmig("verify", str(bundle), "--project", "demo/tls-proxy", "--quiet", "--ca-bundle", neptune3.ca_file or "",
                token=neptune3.api_token, env=bypass))
        assert stats.snapshot() == ({}, {})


# ---- the settings themselves, in this process (no server needed) ----------------------------------------


@pytest.fixture
def clean_trust_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    # setenv first: it records the original state, so whatever the code under test sets is undone afterwards
    for name in _CLEARED | {name.lower() for name in _CLEARED}:
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    from nmig.emulators.tls import ensure_certificates

    return ensure_certificates(tmp_path / "tls").ca_file


def test_a_ca_in_one_variable_reaches_the_clients_reading_the_other(clean_trust_env: pytest.MonkeyPatch, ca_file: Path) -> None:
    from nmig.trust import share_ca_bundle

    clean_trust_env.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    share_ca_bundle()
    assert os.environ["SSL_CERT_FILE"] == str(ca_file)
    clean_trust_env.delenv("REQUESTS_CA_BUNDLE")
    clean_trust_env.setenv("SSL_CERT_FILE", str(ca_file))
    share_ca_bundle()
    assert os.environ["REQUESTS_CA_BUNDLE"] == str(ca_file)
    # a folder of certificates, which requests takes too, goes to httpx's folder variable
    clean_trust_env.delenv("REQUESTS_CA_BUNDLE")
    clean_trust_env.delenv("SSL_CERT_FILE")
    clean_trust_env.setenv("REQUESTS_CA_BUNDLE", str(ca_file.parent))
    share_ca_bundle()
    assert os.environ["SSL_CERT_DIR"] == str(ca_file.parent) and "SSL_CERT_FILE" not in os.environ


def test_variables_naming_different_places_are_kept_and_each_is_checked(
    clean_trust_env: pytest.MonkeyPatch, ca_file: Path
) -> None:
    from nmig.errors import NmigError
    from nmig.trust import check_server_certificate, share_ca_bundle

    missing = ca_file.parent / "missing.pem"
    clean_trust_env.setenv("REQUESTS_CA_BUNDLE", str(missing))
    clean_trust_env.setenv("SSL_CERT_FILE", str(ca_file))
    share_ca_bundle()
    assert (os.environ["REQUESTS_CA_BUNDLE"], os.environ["SSL_CERT_FILE"]) == (str(missing), str(ca_file))
    check_server_certificate("http://127.0.0.1:9")  # plain http: nothing to check
    with pytest.raises(NmigError, match=f"REQUESTS_CA_BUNDLE={missing}: not a readable PEM file"):
        check_server_certificate("https://127.0.0.1:9")


def test_ca_bundle_option_sets_both_variables_and_refuses_a_bad_file_in_one_line(
    clean_trust_env: pytest.MonkeyPatch, ca_file: Path, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.trust import use_ca_bundle

    use_ca_bundle(ca_file)
    assert os.environ["REQUESTS_CA_BUNDLE"] == os.environ["SSL_CERT_FILE"] == str(ca_file.resolve())
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    for path, reason in ((not_pem, "not a PEM file of CA certificates"), (tmp_path / "missing.pem", "no such file")):
        result = CliRunner().invoke(main, ["verify", str(tmp_path), "--project", "a/b", "--ca-bundle", str(path)])
        assert result.exit_code == 2 and reason in result.output and "Traceback" not in result.output


def test_the_plain_http_relaxation_is_set_for_plain_http_loopback_only(clean_trust_env: pytest.MonkeyPatch) -> None:
    from nmig.loopback import prepare_client_env
    from nmig.secrets import make_api_token

    # Port 9 on loopback refuses the connection: the certificate check leaves that to the client.
    prepare_client_env(make_api_token("https://127.0.0.1:9", "key"))
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    prepare_client_env(make_api_token("http://127.0.0.1:9", "key"))
    assert os.environ["OAUTHLIB_INSECURE_TRANSPORT"] == "1"


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


def test_the_test_proxy_tunnels_for_a_process_holding_over_a_thousand_descriptors() -> None:
    # Late in a whole test session the process holds ~1,000 sockets; the proxy's tunnels must still carry
    # bytes (select.select refused descriptors from 1024 on, and every tunnel died after its 200).
    import socket
    import threading

    held = [socket.socket() for _ in range(1100)]
    server = socket.create_server(("127.0.0.1", 0))

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(conn.recv(100))

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    try:
        with connect_proxy() as (proxy_url, stats):
            host, port = proxy_url.removeprefix("http://").split(":")
            with socket.create_connection((host, int(port)), timeout=10) as tunnel:
                tunnel.sendall(f"CONNECT 127.0.0.1:{server.getsockname()[1]} HTTP/1.1\r\n\r\n".encode())
                assert tunnel.recv(100).startswith(b"HTTP/1.1 200")
                tunnel.sendall(b"ping")
                assert tunnel.recv(100) == b"ping"
            assert sum(stats.snapshot()[0].values()) == 1
    finally:
        server.close()
        for sock in held:
            sock.close()
        thread.join(timeout=5)
