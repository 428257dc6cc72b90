"""Guards on the neptune-scale internals nmig's import uses (nmig/importer/client.py). A client upgrade that
changes any of them fails here, loudly, instead of silently misbehaving during a migration."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import neptune_scale
from neptune_scale import Run
from neptune_scale.sync import sync_process
from neptune_scale.sync.operations_repository import OperationsRepository
from neptune_scale.util.daemon import Daemon

from nmig.importer import client


def test_pinned_client_version() -> None:
    from importlib.metadata import version

    assert version("neptune-scale").startswith("0.30."), "client.py was written against neptune-scale 0.30.x"
    assert neptune_scale.Run is Run


def test_offline_run_exposes_its_operation_log(tmp_path: Path) -> None:
    run = Run(run_id="guard-1", project="ws/p", mode="offline", log_directory=tmp_path,
              enable_console_log_capture=False, source_tracking_config=None)
    try:
        assert isinstance(run._operations_repo, OperationsRepository)
        assert run._operations_repository_path.name == "run_operations.sqlite3"
        assert run._storage_directory_path.is_dir()
        assert run._sync_process is None  # offline: no sync process of its own
        # the creation operation is in the log
        assert run._operations_repo.get_operation_count() == 1
    finally:
        run.close()


def test_repository_methods_used() -> None:
    for name, params in {
        "save_update_run_snapshots": ["updates"],
        "save_create_run": ["run"],
        "save_file_upload_requests": ["files"],
        "get_operation_count": ["limit"],
        "get_file_upload_requests_count": ["limit"],
        "get_operations_sequence_id_range": [],
        "get_operation_submission_sequence_id_range": [],  # client._StatusTracker
        "get_errors": ["limit"],
        "delete_errors": ["error_ids"],
        "close": ["cleanup_files"],
    }.items():
        signature = inspect.signature(getattr(OperationsRepository, name))
        assert all(p in signature.parameters for p in params), (name, signature)
    # RunSink.release_file_refs labels a file reference with the sequence id the save returns
    assert "SequenceId" in str(inspect.signature(OperationsRepository.save_update_run_snapshots).return_annotation)


def test_sync_threads_and_their_attributes() -> None:
    for cls in (sync_process.SenderThread, sync_process.StatusTrackingThread, sync_process.FileUploaderThread):
        assert issubclass(cls, Daemon)
    assert set(inspect.signature(sync_process.SenderThread).parameters) >= {"api_token", "family", "operations_repository"}
    assert set(inspect.signature(sync_process.StatusTrackingThread).parameters) >= {"api_token", "project", "operations_repository"}
    assert set(inspect.signature(sync_process.FileUploaderThread).parameters) >= {"project", "api_token", "operations_repository"}
    assert "operation" in inspect.signature(sync_process.SenderThread.submit).parameters
    assert "request_ids" in inspect.signature(sync_process.StatusTrackingThread.check_batch).parameters
    # the attributes client.py sets on the thread objects (shared API clients, poll interval, asyncio loop)
    for cls, attribute in (
        (sync_process.SenderThread, "self._backend"),
        (sync_process.StatusTrackingThread, "self._backend"),
        (sync_process.StatusTrackingThread, "self._operations_repository"),
        (sync_process.FileUploaderThread, "self._api_client"),
        (sync_process.FileUploaderThread, "self._aio_loop"),
        (Daemon, "self._sleep_time"),
    ):
        assert attribute in inspect.getsource(cls), (cls.__name__, attribute)
    assert callable(sync_process.code_to_exception)


def test_run_methods_the_exact_encoding_relies_on() -> None:
    # client._MigratedRun overrides _create_run; RunSink.log_file asks _prepare_files_for_upload for the upload
    assert list(inspect.signature(Run._create_run).parameters) == [
        "self", "creation_time", "experiment_name", "fork_run_id", "fork_step", "inherit_configs"]
    assert {"files", "step"} <= set(inspect.signature(Run._prepare_files_for_upload).parameters)


def test_exact_creation_time_in_the_operation_log(tmp_path: Path) -> None:
    import datetime as dt

    sink_run = client._MigratedRun(-1, run_id="guard-2", project="ws/p", mode="offline", log_directory=tmp_path,
                                   experiment_name="e", creation_time=dt.datetime.now(),
                                   enable_console_log_capture=False, source_tracking_config=None)
    try:
        operations = sink_run._operations_repo.get_operations(up_to_bytes=32 << 20)
        create = operations[0].operation
        assert (create.creation_time.seconds, create.creation_time.nanos) == (-1, 999_000_000)
        assert create.experiment_id == "e" and create.family == "guard-2"
    finally:
        sink_run.close()


def test_step_decomposition_matches() -> None:
    from neptune_scale.sync.metadata_splitter import make_step

    request = client.new_request("ws/p", "r")
    client.append_points(request, "m", [7_654_321], [1.5], [1_700_000_000_123], "float64")
    snapshot = request.update_batch.snapshots[0]
    assert snapshot.step == make_step(7.654321)
    assert snapshot.timestamp.seconds == 1_700_000_000 and snapshot.timestamp.nanos == 123_000_000
    assert snapshot.append["m"].float64 == 1.5


def test_tls_contexts_shared_per_trust_setting(monkeypatch) -> None:
    """The uploader's per-file httpx clients get one SSLContext per trust setting, not one each (client.py)."""
    import httpx
    from httpx._transports import default as transports

    from nmig.importer import client

    monkeypatch.setattr(transports, "create_ssl_context", transports.create_ssl_context)
    monkeypatch.setattr(client, "_TLS_CONTEXTS", {})
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    client.reuse_tls_contexts()
    client.reuse_tls_contexts()  # idempotent: not wrapped twice
    first = httpx.AsyncClient()._transport._pool._ssl_context
    second = httpx.AsyncClient()._transport._pool._ssl_context
    assert first is second
    unverified = httpx.Client(verify=False)._transport._pool._ssl_context
    assert unverified is not first and unverified.verify_mode.name == "CERT_NONE"
    # A CA variable set later is honoured: a new trust setting gets its own context.
    import certifi

    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert httpx.AsyncClient()._transport._pool._ssl_context is not first
    assert len(client._TLS_CONTEXTS) == 3


def test_s3_uploads_nmig_replaces_keep_the_clients_signatures() -> None:
    """nmig.importer.upload replaces the client's S3 uploads (which read whole files or all parts into memory)
    in the uploader thread's module: the names it replaces and their parameters must still be the client's."""
    from neptune_scale.sync import sync_process
    from neptune_scale.sync.storage import s3

    from nmig.importer import upload

    for name in ("upload_to_s3_single", "upload_to_s3_multipart"):
        assert hasattr(sync_process, name)
        assert list(inspect.signature(getattr(s3, name)).parameters) == list(inspect.signature(getattr(upload, name)).parameters)
    assert callable(s3._is_retryable_httpx_error)


def test_the_quick_retries_reach_the_clients_through_the_names_they_are_wrapped_at() -> None:
    # retry_query_answers_quickly wraps neptune_query.internal.client.create_auth_api_client, which get_client
    # calls by that name; retry_transient_answers_quickly swaps httpx.Client's _transport and _mounts, which
    # httpx picks a request's transport from.
    import httpx
    from neptune_query.internal import client as query_client

    assert "create_auth_api_client" in inspect.unwrap(query_client.get_client).__code__.co_names
    assert {"_mounts", "_transport"} <= set(httpx.Client._transport_for_url.__code__.co_names)
    http = httpx.Client()
    assert isinstance(http._transport, httpx.BaseTransport) and isinstance(http._mounts, dict)
    http.close()


def _answers(*statuses: int, retry_after: str | None = None) -> tuple[Any, list[int]]:
    """An httpx.MockTransport answering the given statuses in turn (then 200), and the list of what it sent."""
    import httpx

    sent: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        request.read()
        status = statuses[len(sent)] if len(sent) < len(statuses) else 200
        sent.append(status)
        headers = {"Retry-After": retry_after} if retry_after is not None and status == 429 else {}
        return httpx.Response(status, headers=headers, content=b"{}")

    return httpx.MockTransport(handler), sent


def test_quick_retry_transport_asks_transient_answers_again_and_hands_on_what_stays_bad() -> None:
    import httpx

    from nmig.transient import QUICK_RETRIES

    transport, sent = _answers(503, 429, 500, retry_after="0")
    with httpx.Client(transport=client.QuickRetryTransport(transport)) as http:
        assert http.post("http://n3.test/ingest", content=b"body").status_code == 200
    assert sent == [503, 429, 500, 200]

    transport, sent = _answers(*[500] * 10)
    with httpx.Client(transport=client.QuickRetryTransport(transport)) as http:
        assert http.get("http://n3.test/x").status_code == 500  # the client's own loop takes it from here
    assert len(sent) == QUICK_RETRIES + 1

    transport, sent = _answers(429, retry_after="3600")  # a long pause asked for: left to the client
    with httpx.Client(transport=client.QuickRetryTransport(transport)) as http:
        assert http.get("http://n3.test/x").status_code == 429
    assert sent == [429]

    transport, sent = _answers(503)  # a streamed body cannot be sent twice
    with httpx.Client(transport=client.QuickRetryTransport(transport)) as http:
        assert http.post("http://n3.test/x", content=iter([b"a", b"b"])).status_code == 503
    assert sent == [503]


def test_a_faulted_service_is_read_without_the_clients_own_retries(tmp_path: Path) -> None:
    # Every third request faulted: neptune-query's own loop warns on each retry it makes
    # (neptune_query/internal/retrieval/retry.py:130-160); the quick retries answer them first.
    import warnings

    import neptune_query
    from neptune_query import runs as nq_runs
    from neptune_scale.projects import create_project

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.server import FAULT_EXEMPT

    plan = FaultPlan(fail_rate=0.3, seed=4, exempt=FAULT_EXEMPT)
    client.retry_query_answers_quickly()
    with serve_neptune3(data_dir=tmp_path, faults=plan) as info, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_project("quick-retries", workspace="demo", api_token=info.api_token)  # never faulted
        neptune_query.set_api_token(info.api_token)
        for _ in range(6):
            assert nq_runs.list_runs(project="demo/quick-retries") == []
    assert plan.injected > 0
    assert not [w for w in caught if "retry automatically" in str(w.message)], [str(w.message) for w in caught]


def test_azure_sdk_is_deferred_until_its_first_upload() -> None:
    # in a fresh interpreter: importing the importer leaves the Azure SDK unloaded, and the stand-in hands
    # over to the client's real module (the one sync_process.py:19 names) when it is first needed
    import subprocess
    import sys

    code = (
        "import sys, inspect\n"
        "import nmig.importer.client\n"
        "from nmig.importer import deferred\n"
        "from neptune_scale.sync import sync_process\n"
        "assert 'azure.storage.blob' not in sys.modules\n"
        "assert sync_process.upload_to_azure is deferred.upload_to_azure\n"
        "real = deferred._real_azure_module()\n"
        "assert not getattr(real, '_nmig_deferred', False) and 'azure.storage.blob' in sys.modules\n"
        "assert list(inspect.signature(real.upload_to_azure).parameters)[:3] == ['local_path', 'mime_type', 'storage_url']\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr


def test_the_shared_token_reaches_the_authenticator_through_the_names_it_is_set_at() -> None:
    # _SharedTokens wraps NeptuneAuthenticator._api_key_exchange_factory and seeds _token; the authenticator
    # reads both in _refresh_token / sync_auth_flow, and its lock is one for the whole class.
    from neptune_api.client import NeptuneAuthenticator

    names = set(NeptuneAuthenticator._refresh_token.__code__.co_names)
    assert {"_api_key_exchange_factory", "_token"} <= names
    assert "_token" in NeptuneAuthenticator._refresh_token_if_expired.__code__.co_names
    assert "_NeptuneAuthenticator__LOCK" in vars(NeptuneAuthenticator)  # class-wide: why nmig shares tokens
    assert {"_credentials", "_api_key_exchange_factory", "_token"} <= set(NeptuneAuthenticator.__init__.__code__.co_names)


def test_clients_of_one_process_ask_for_the_config_and_exchange_the_api_key_once(tmp_path: Path) -> None:
    # Four workers' clients and a project lookup against the emulator: one key exchange in all, no refresh,
    # and each client authenticated (its request answered 200 with the shared token).
    from collections import Counter

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.jwt import REALM_PATH
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.importer import target

    asked: Counter[str] = Counter()

    class CountingPlan(FaultPlan):
        def decide(self, path: str):  # type: ignore[no-untyped-def]
            asked[path.split("?")[0]] += 1
            return super().decide(path)

    with serve_neptune3(data_dir=tmp_path, faults=CountingPlan()) as info:
        assert target.find_project(target.backend_http(info.api_token), "demo/absent") is None
        pools = [client.ClientPool(info.api_token) for _ in range(4)]
        try:
            for pool in pools:
                http = pool.sender.get().backend.get_httpx_client()
                assert http.get("/api/backend/v1/projects/get", params={"projectIdentifier": "demo/absent"}).status_code == 404
        finally:
            for pool in pools:
                pool.close()
    assert asked["/api/backend/v1/authorization/oauth-token"] == 1, asked
    assert asked[REALM_PATH + "/protocol/openid-connect/token"] == 0, asked
    assert asked["/api/backend/v1/projects/get"] == 5
    # and the client config and the OpenID discovery document once (share_client_config)
    assert asked["/api/backend/v1/clients/config"] == asked[REALM_PATH + "/.well-known/openid-configuration"] == 1, asked


def test_the_shared_client_config_reaches_the_client_through_the_name_it_is_wrapped_at() -> None:
    from neptune_scale.net import api_client

    assert "get_config_and_token_urls" in api_client.ApiClient.__init__.__code__.co_names
    assert list(inspect.signature(api_client.get_config_and_token_urls).parameters) == ["credentials", "verify_ssl"]


def test_a_shared_token_close_to_expiry_is_not_handed_on() -> None:
    # plain data: a token with less than SEED_MARGIN_S to live is exchanged anew, and the new one is kept
    class Token:
        def __init__(self, seconds_left: float) -> None:
            self.seconds_left = seconds_left

    class Credentials:
        base_url, api_key = "https://n3.example", "key"

    class Auth:
        def __init__(self, exchange: Any) -> None:
            self._credentials, self._api_key_exchange_factory, self._token = Credentials(), exchange, None

    class Authenticated:
        def __init__(self, auth: Auth) -> None:
            self.auth = auth

        def get_httpx_client(self) -> Any:
            return self

    shared = client._SharedTokens()
    exchanged: list[Token] = []

    def exchange(_client: Any, _credentials: Any) -> Token:
        exchanged.append(Token(shared.SEED_MARGIN_S - 1 if not exchanged else 3000))
        return exchanged[-1]

    first, second, third = (Auth(exchange) for _ in range(3))
    for auth in (first, second, third):
        shared.install(Authenticated(auth))
    assert first._token is None  # nothing to seed yet
    assert first._api_key_exchange_factory(None, None) is exchanged[0]
    assert second._api_key_exchange_factory(None, None) is exchanged[1]  # the first one too close to expiry
    assert third._api_key_exchange_factory(None, None) is exchanged[1] and len(exchanged) == 2
    fourth = Auth(exchange)
    shared.install(Authenticated(fourth))
    assert fourth._token is exchanged[1]
