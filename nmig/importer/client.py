"""The one place nmig touches neptune-scale, including the internals the fast path needs.

Why internals: the public `Run` commits its SQLite operation log once per call (~4,000 points/s when a series
is replayed point by point) and starts one sync process per run (~0.5 s of CPU each just to start). The
pinned client (0.30.x) offers, underneath:

* `Run(mode="offline")`: the official run object records the run creation, configs, tags and file uploads in
  its operation log without starting a sync process;
* `SenderThread.submit` and `StatusTrackingThread.check_batch` (the client's own request and status calls,
  with its retry/backoff and error mapping): series points go straight from the bundle into
  `UpdateRunSnapshots` requests of up to 50,000 points or 8 MB, one snapshot per step as `Run.log_metrics` builds them,
  skipping the operation log's per-point SQLite write and read-back;
* the sync process's own `SenderThread`, `StatusTrackingThread` and `FileUploaderThread`, which nmig starts
  in this process, one trio per run, sharing one authenticated API client per role and worker instead of
  logging in three times per run.

tests/importer/test_client_internals.py checks every one of these names and signatures, so a client upgrade
that changes them fails loudly there instead of misbehaving here. pyproject.toml pins neptune-scale to 0.30.x.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from google.protobuf.timestamp_pb2 import Timestamp
from neptune_api.proto.google_rpc.code_pb2 import Code
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import (
    FileRef,
    Step,
    UpdateRunSnapshot,
    UpdateRunSnapshots,
)
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRunMessage
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from neptune_scale import Run
from neptune_scale.exceptions import (
    NeptuneRetryableError,
    NeptuneScaleError,
    NeptuneScaleWarning,
    NeptuneSeriesPointDuplicate,
)
from neptune_scale.net.api_client import ApiClient
from neptune_scale.sync.metadata_splitter import MetadataSplitter
from neptune_scale.sync.operations_repository import OperationsRepository
from neptune_scale.sync.parameters import MAX_REQUEST_SIZE_BYTES
from neptune_scale.sync.sync_process import (
    FileUploaderThread,
    SenderThread,
    StatusTrackingThread,
    code_to_exception,
)
from neptune_scale.types import File

from nmig.importer import upload, wire
from nmig.transient import (
    QUICK_RETRIES,
    RETRY_AFTER_LIMIT,
    TRANSIENT_STATUSES,
    backoff_seconds,
    retry_after_seconds,
)

# A sync thread with work in hand goes round again after this long (the client's defaults are 0.5-1 s, tuned
# for a training script; an import waits on them, so a short poll keeps small runs from idling).
SYNC_POLL_S = 0.02
# A sync thread with nothing to do sleeps this long, unless kicked: RunSink kicks the sender when it writes
# operations, the uploader when it writes upload requests, and the sender kicks the status thread when it
# submitted something (see _KickedDaemon). Each round of each thread is an SQLite transaction or more on the
# run's operation log; at SYNC_POLL_S, 16 workers' 48 idle threads made ~2,400 of them a second, and the
# import's system time grew with --max-workers (benchmarks/bench_latency.py).
SYNC_IDLE_S = 0.5
# The status thread's longest wait between two status checks that found nothing new (see _StatusTracker).
STATUS_POLL_MAX_S = 0.32


def quiet_client_logs() -> None:
    """neptune-scale logs every retry and wait; nmig reports outcomes itself."""
    logging.getLogger("neptune").setLevel(logging.CRITICAL)


# ---- one TLS context per trust setting ---------------------------------------------------------------
# neptune-scale's uploader opens a new httpx client for every file it uploads (neptune_scale/sync/storage/
# s3.py, azure.py, gcp.py: `AsyncClient(...)` per call), and httpx builds a new SSLContext for every client,
# loading the whole CA bundle again (httpx/_config.py create_ssl_context): ~50 ms of CPU per file on this
# machine, under the GIL, so a worker's uploads ran one after another and a 3-file run spent ~0.4 s there.
# An SSLContext is safe to share between clients, threads and event loops (httpx shares one between all
# connections of a client), so nmig builds one per trust setting and hands it out again. (httpcore sets the
# ALPN list on the context for each connection; every httpx client here speaks HTTP/1.1 only, neptune-query
# passing http2=False and neptune-scale never enabling it, so that list is the same for all.) The cache key holds
# everything create_ssl_context reads: `verify`, `trust_env` and the two CA variables it consults, so
# --ca-bundle / SSL_CERT_FILE set later still take effect; anything else (a client certificate, a context
# given by the caller) goes through untouched. Measured in benchmarks/bench_latency.py.
_TLS_CONTEXTS: dict[tuple[Any, ...], Any] = {}
_TLS_LOCK = threading.Lock()


def reuse_tls_contexts() -> None:
    """Make httpx's transports share one SSLContext per trust setting (idempotent; see above)."""
    import os

    from httpx._transports import default as transports

    build = transports.create_ssl_context
    if getattr(build, "_nmig_shared", False):
        return

    def shared(verify: Any = True, cert: Any = None, trust_env: bool = True) -> Any:
        if cert is not None or not isinstance(verify, bool):
            return build(verify=verify, cert=cert, trust_env=trust_env)
        key = (verify, trust_env, os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        with _TLS_LOCK:
            context = _TLS_CONTEXTS.get(key)
            if context is None:
                context = _TLS_CONTEXTS[key] = build(verify=verify, cert=cert, trust_env=trust_env)
        return context

    shared._nmig_shared = True  # type: ignore[attr-defined]
    transports.create_ssl_context = shared  # type: ignore[assignment]


_CONFIG_LOCK = threading.Lock()


def share_client_config() -> None:
    """neptune-scale's ApiClient asks for the client config and then the OpenID discovery document each time
    one is built (neptune_scale/net/api_client.py ApiClient.__init__ calls get_config_and_token_urls by that
    module-level name: two round trips in a row, before its first request). Both answers describe the
    service, the same for every client of a process, so they are asked once per service (base URL, TLS
    setting) and kept: every import worker's first run and every project lookup started two round trips
    later without this. A failed ask is not kept. Idempotent; a test pins the name."""
    from neptune_scale.net import api_client

    fetch = api_client.get_config_and_token_urls
    if getattr(fetch, "_nmig_shared", False):
        return
    kept: dict[tuple[str, bool], Any] = {}

    def get_config_and_token_urls(*, credentials: Any, verify_ssl: bool) -> Any:
        key = (str(credentials.base_url), bool(verify_ssl))
        with _CONFIG_LOCK:
            found = kept.get(key)
        if found is None:
            found = fetch(credentials=credentials, verify_ssl=verify_ssl)
            with _CONFIG_LOCK:
                kept[key] = found
        return found

    get_config_and_token_urls._nmig_shared = True  # type: ignore[attr-defined]
    api_client.get_config_and_token_urls = get_config_and_token_urls  # type: ignore[assignment]


class QuickRetryTransport:
    """An httpx transport that asks a transient answer (5xx, 429) again itself, on nmig.transient's policy,
    before the client's own loop sees it; the last answer goes to the client when the quick retries run out.

    Why: neptune-scale backs off with `backoff.expo` and full jitter, without a limit and ignoring Retry-After
    (sync_process.py:287,443; nmig's DirectSeriesSender the same way), and neptune-query from 0.5 s with full
    jitter (neptune_query/internal/retrieval/retry.py:55-72); both count every failure of a request, and
    neither offers a setting for it (neptune_scale/util/envs.py, neptune_query/internal/env.py have only time
    budgets). A request is sent again unchanged, as the clients themselves do after a 5xx or 429; only a body
    held in memory (httpx.ByteStream: what every generated call sends) can be, anything else goes through once.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def handle_request(self, request: Any) -> Any:
        replayable = isinstance(request.stream, httpx.ByteStream)  # a body held in memory (or none)
        retry = 0
        while True:
            response = self._inner.handle_request(request)
            if not replayable or response.status_code not in TRANSIENT_STATUSES or retry == QUICK_RETRIES:
                return response
            retry += 1
            wait = retry_after_seconds(response.headers.get("retry-after"))
            if wait is not None and wait > RETRY_AFTER_LIMIT:
                return response  # a long pause asked for: the client's own loop decides how to take it
            response.read()
            response.close()
            time.sleep(backoff_seconds(retry) if wait is None else wait)

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> QuickRetryTransport:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.__exit__(*exc)


def retry_transient_answers_quickly(authenticated_client: Any) -> Any:
    """Put QuickRetryTransport under a neptune-api AuthenticatedClient's httpx client (neptune_api/client.py
    get_httpx_client builds it once and keeps it) and every transport it mounts; idempotent. httpx.Client
    keeps them in `_transport` and `_mounts` (httpx/_client.py _transport_for_url); a test pins both."""
    http = authenticated_client.get_httpx_client()
    if not isinstance(http._transport, QuickRetryTransport):
        http._transport = QuickRetryTransport(http._transport)
    http._mounts = {
        pattern: t if t is None or isinstance(t, QuickRetryTransport) else QuickRetryTransport(t)
        for pattern, t in http._mounts.items()
    }
    return authenticated_client


class _SharedTokens:
    """One access token per API token and service for the whole process, handed to every authenticated client
    nmig builds instead of one key exchange per client.

    Why: neptune-api exchanges the API key on a client's first request, under one lock for every client of
    the process (neptune_api/client.py NeptuneAuthenticator: `__LOCK` is a class attribute, taken in
    `_refresh_token`), and a client whose token another of its threads has just fetched refreshes it once
    more under that lock. Sixteen workers' clients thus logged in one after another, two round trips each:
    over 50 ms of latency the last worker started its first run 1.7 s late. A token is a bearer token of the
    account, valid for any client until it expires, so a client starts with the process's token (seeded into
    its authenticator) and exchanges the key itself only when there is none with at least SEED_MARGIN_S to
    live; an expired token is refreshed by each client on its own, as the client always does.
    """

    SEED_MARGIN_S = 120.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, Any] = {}

    @staticmethod
    def _key(credentials: Any) -> str:
        # a digest, not the API token, names the entry
        return hashlib.sha256(f"{credentials.base_url}\n{credentials.api_key}".encode()).hexdigest()

    def _fresh(self, key: str) -> Any:
        token = self._tokens.get(key)
        return token if token is not None and token.seconds_left > self.SEED_MARGIN_S else None

    def install(self, authenticated_client: Any) -> None:
        """Seed the client's authenticator with the process's token and keep what it exchanges; idempotent."""
        auth = authenticated_client.get_httpx_client().auth
        if getattr(auth, "_nmig_shared_token", False) or not hasattr(auth, "_api_key_exchange_factory"):
            return
        key = self._key(auth._credentials)
        exchange = auth._api_key_exchange_factory

        def exchange_once(client: Any, credentials: Any) -> Any:
            with self._lock:
                token = self._fresh(key)
            if token is None:
                token = exchange(client, credentials)
                with self._lock:
                    self._tokens[key] = token
            return token

        auth._api_key_exchange_factory = exchange_once
        auth._nmig_shared_token = True
        with self._lock:
            if auth._token is None:
                auth._token = self._fresh(key)


_SHARED_TOKENS = _SharedTokens()


def fit_client(authenticated_client: Any) -> Any:
    """What nmig puts under every neptune-api AuthenticatedClient it uses (neptune-scale's and neptune-query's
    alike): quick retries of transient answers and the process's shared access token. Idempotent."""
    retry_transient_answers_quickly(authenticated_client)
    _SHARED_TOKENS.install(authenticated_client)
    return authenticated_client


def retry_query_answers_quickly() -> None:
    """The same for the clients neptune-query builds from now on (once per process): its get_client calls
    `create_auth_api_client` by that module-level name (neptune_query/internal/client.py:41-61; a test pins
    it) and caches the client per token."""
    from neptune_query.internal import client as query_client

    create = query_client.create_auth_api_client
    if getattr(create, "_nmig_quick_retry", False):
        return

    def create_auth_api_client(*args: Any, **kwargs: Any) -> Any:
        return fit_client(create(*args, **kwargs))

    create_auth_api_client._nmig_quick_retry = True  # type: ignore[attr-defined]
    create_auth_api_client._nmig_original = create  # type: ignore[attr-defined]  # for tests of the bare client
    query_client.create_auth_api_client = create_auth_api_client  # type: ignore[assignment]


class _SharedClient:
    """One authenticated ApiClient reused by many runs' sync threads; their close() must not close it."""

    def __init__(self, api_token: str) -> None:
        self._client: ApiClient | None = None
        self._api_token = api_token

    def get(self) -> _SharedClient:
        if self._client is None:
            self._client = ApiClient(api_token=self._api_token)
            fit_client(self._client.backend)
        return self

    def __getattr__(self, name: str) -> Any:
        assert self._client is not None
        return getattr(self._client, name)

    def close(self) -> None:
        """Called by a sync thread at its end: the client stays open for the next run."""

    def really_close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


class ClientPool:
    """Per worker thread: one API client for the three sync roles, reused across the runs the worker imports.

    One client, not one per role: each new ApiClient asks for the client config and the OpenID discovery
    document and exchanges the API key for a token, three round trips in a row (neptune_scale/net/
    api_client.py ApiClient.__init__, neptune_api/client.py AuthenticatedClient, whose token refresh holds a
    lock), so a worker's first run waited nine of them. The client is an httpx.Client, safe to share between
    threads; the roles' requests of one worker stay far below its 20 kept-alive connections."""

    def __init__(self, api_token: str) -> None:
        reuse_tls_contexts()
        share_client_config()
        self.sender = self.status = self.uploader = _SharedClient(api_token)

    def close(self) -> None:
        self.sender.really_close()


@dataclass(frozen=True)
class ClientError:
    """An error the client recorded for this run (the same records its on_error_callback is fed from)."""

    kind: str  # "error" | "warning" | "retryable"
    error_type: str
    message: str
    sequence_id: int | None


def _classify(exc: BaseException) -> str:
    # Mirrors neptune_scale.sync.errors_tracking.ErrorsMonitor, which routes these records to the callbacks:
    # retryable ones to on_network_error/on_warning, warnings to on_warning, the rest to on_error.
    if isinstance(exc, NeptuneRetryableError):
        return "retryable"
    if isinstance(exc, (NeptuneScaleWarning, NeptuneSeriesPointDuplicate)):
        return "warning"
    if isinstance(exc, NeptuneScaleError):
        return "error"
    return "error"


def new_request(project: str, run_id: str) -> RunOperation:
    """An empty update request for one run; points are added in place (no per-point message copies)."""
    return RunOperation(project=project, run_id=run_id, update_batch=UpdateRunSnapshots())


@dataclass(frozen=True)
class EncodedOperation:
    """A RunOperation already in its wire form (nmig.importer.wire), handed to the client's sender as is.

    neptune-scale's SenderThread.submit (sync_process.py:287-299) passes its operation to ApiClient.submit,
    which uses nothing of it but `operation.SerializeToString()` (net/api_client.py:207-208): the request
    goes out as these bytes, inside the client's own retries and error handling. Parsing the bytes into a
    RunOperation only for the client to serialise it back (the same bytes: tests/importer/test_wire.py)
    cost about 0.6 us a point, a tenth of an import's CPU."""

    payload: bytes
    points: int  # snapshots in it

    def SerializeToString(self) -> bytes:  # noqa: N802 - the protobuf method name the client calls
        return self.payload


def operation_points(request: RunOperation | EncodedOperation) -> int:
    """How many snapshots (points) a request carries."""
    if isinstance(request, EncodedOperation):
        return request.points
    return len(request.update_batch.snapshots)


def append_points(
    request: RunOperation,
    path: str,
    micros: Sequence[int],
    values: Sequence[float] | Sequence[str],
    timestamps_ms: Sequence[int],
    value_field: str,
) -> None:
    """One UpdateRunSnapshot per point, as Run.log_metrics ("float64") and Run.log_string_series ("string")
    build them (step as whole + micro parts). Float series take the faster nmig.importer.wire; this per-message
    way is its reference in the tests."""
    add = request.update_batch.snapshots.add
    for micro, value, ms in zip(micros, values, timestamps_ms, strict=True):
        snapshot = add(step=step_proto(micro), timestamp=timestamp_proto(ms))
        setattr(snapshot.append[path], value_field, value)


def step_proto(micros: int) -> Step:
    """The exact Step of a step in micro-units (never neptune-scale's make_step: see nmig.importer.wire)."""
    whole, micro = wire.step_parts(micros)
    return Step(whole=whole, micro=micro)


def timestamp_proto(ms: int) -> Timestamp:
    """The exact Timestamp of epoch milliseconds (never neptune-scale's datetime_to_proto: see nmig.importer.wire)."""
    seconds, nanos = wire.timestamp_parts(ms)
    return Timestamp(seconds=seconds, nanos=nanos)


class SyncProgress:
    """A count the sync threads of one run raise after each round; RunSink's waits sleep on it (with a
    timeout, as a safety) instead of asking the operation log every SYNC_POLL_S."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._rounds = 0

    def bump(self) -> None:
        with self._changed:
            self._rounds += 1
            self._changed.notify_all()

    def rounds(self) -> int:
        with self._changed:
            return self._rounds

    def wait_past(self, rounds: int, timeout_s: float) -> None:
        """Until a round after `rounds` has ended, or `timeout_s`."""
        with self._changed:
            self._changed.wait_for(lambda: self._rounds != rounds, timeout=timeout_s)


class _KickedDaemon:
    """A neptune-scale sync thread (util/daemon.py Daemon) that sleeps SYNC_IDLE_S when it has nothing to do
    and is woken by `kick()` when there is. Daemon.run reads `_sleep_time` and waits on `_wait_condition`
    with it as the timeout, both under that condition (tests/importer/test_client_internals.py pins both);
    `kick` sets the sleep to 0 and notifies under the same condition, so a kick during a round, or between a
    round and its wait, is never lost: the next round starts at once."""

    _wait_condition: threading.Condition
    _sleep_time: float
    _nmig_kicked = False
    _nmig_progress: SyncProgress | None = None

    def kick(self) -> None:
        with self._wait_condition:
            self._nmig_kicked = True
            self._sleep_time = 0.0
            self._wait_condition.notify_all()

    def _round_begins(self) -> None:
        with self._wait_condition:
            self._nmig_kicked = False

    def _round_ends(self, sleep_s: float) -> None:
        with self._wait_condition:
            if not self._nmig_kicked:
                self._sleep_time = sleep_s
        if self._nmig_progress is not None:
            self._nmig_progress.bump()


class _Sender(_KickedDaemon, SenderThread):
    """The client's sender, kicked when RunSink writes operations; it kicks the status thread when it
    submitted something."""

    _nmig_status: _KickedDaemon | None = None

    def work(self) -> None:
        self._round_begins()
        before = self._last_queued_seq
        try:
            super().work()
        finally:
            if self._last_queued_seq != before and self._nmig_status is not None:
                self._nmig_status.kick()
            self._round_ends(SYNC_IDLE_S)


class _Uploader(_KickedDaemon, FileUploaderThread):
    """The client's uploader, kicked when RunSink writes upload requests. It sets its asyncio loop only when
    it creates its own API client; with a shared client it is set here, once, in the uploader's thread. Its
    S3 uploads are nmig.importer.upload's, which stream files from disk instead of reading them (or all their
    parts) into memory."""

    _loop_set = False

    def work(self) -> None:
        self._round_begins()
        try:
            if not self._loop_set:
                upload.install()
                asyncio.set_event_loop(self._aio_loop)
                self._loop_set = True
            super().work()
        finally:
            self._round_ends(SYNC_IDLE_S)

    def close(self) -> None:
        # the client's close() closes the loop (sync_process.py FileUploaderThread.close): its S3 client first
        upload.close_loop_client(self._aio_loop)
        super().close()


class _StatusTracker(_KickedDaemon, StatusTrackingThread):
    """The client's status thread, kicked by the sender after a submission and backing off while the service
    has nothing new to say. Every round with a submission unconfirmed is a status request
    (StatusTrackingThread.work); a run's first operations (its creation, configs, tags) wait in the service's
    ingest queue behind the series of every run before them, so at SYNC_POLL_S a status thread asked ~14
    times a second for the whole run: 16 workers made ~200 status requests a second, which cost more CPU in
    client and service than the points themselves (benchmarks/bench_latency.py). The wait doubles, up to
    STATUS_POLL_MAX_S, while the unconfirmed submissions stay the same, and drops back to SYNC_POLL_S as soon
    as one is confirmed or a new one is submitted, so the end of a run is seen as soon as before; with none
    left it sleeps until the sender kicks it."""

    _nmig_backoff_s = SYNC_POLL_S
    # Held until RunSink.wait_for_processing, which replay calls once the run's series are confirmed: the
    # operations it confirms (creation, configs, tags, file references) wait in the service's queue before
    # and after those series, and nothing needs their confirmation before the run's end, so asking earlier
    # was ~12 status requests a run for nothing (bench_latency: 1,045 status checks for 40 runs, 243 submits).
    _nmig_held = True

    def release(self) -> None:
        self._nmig_held = False
        self.kick()

    def work(self) -> None:
        self._round_begins()
        if self._nmig_held:
            self._round_ends(SYNC_IDLE_S)
            return
        repo = self._operations_repository
        before = after = None
        try:
            before = repo.get_operation_submission_sequence_id_range()
            super().work()
            after = repo.get_operation_submission_sequence_id_range()
        finally:
            if after is None:
                self._nmig_backoff_s = SYNC_POLL_S
                sleep = SYNC_IDLE_S
            elif after != before:
                self._nmig_backoff_s = sleep = SYNC_POLL_S
            else:
                self._nmig_backoff_s = sleep = min(self._nmig_backoff_s * 2, STATUS_POLL_MAX_S)
            self._round_ends(sleep)


# Datetime configs per snapshot nmig builds itself (a few dozen bytes each: far below the client's 16 MB).
_DATETIMES_PER_SNAPSHOT = 1000


def config_snapshots(project: str, run_id: str, configs: dict[str, Any]) -> list[UpdateRunSnapshot]:
    """The snapshots assigning `configs`, as Run.log_configs builds them (the client's MetadataSplitter: its
    value types, path checks and size split), except datetimes: those nmig encodes itself, exactly (to the
    millisecond, before 1970 too; see nmig.importer.wire)."""
    now = dt.datetime.now(dt.timezone.utc)
    moments = {path: value for path, value in configs.items() if isinstance(value, dt.datetime)}
    others = {path: value for path, value in configs.items() if path not in moments}
    snapshots: list[UpdateRunSnapshot] = []
    if others:
        snapshots += MetadataSplitter(
            project=project, run_id=run_id, timestamp=now, step=None, configs=others, metrics=None, files=None,
            file_series=None, add_tags=None, remove_tags=None,
        )
    paths = sorted(moments)
    for start in range(0, len(paths), _DATETIMES_PER_SNAPSHOT):
        snapshot = UpdateRunSnapshot(timestamp=timestamp_proto(wire.datetime_ms(now)))
        for path in paths[start : start + _DATETIMES_PER_SNAPSHOT]:
            snapshot.assign[path].timestamp.CopyFrom(timestamp_proto(wire.datetime_ms(moments[path])))
        snapshots.append(snapshot)
    return snapshots


class _MigratedRun(Run):
    """The official Run, creating its run with an exact creation time: Run._create_run would put it through
    datetime_to_proto, which moves a time before 1970 by up to a second (see nmig.importer.wire)."""

    def __init__(self, creation_ms: int | None, **kwargs: Any) -> None:
        self._nmig_creation_ms = creation_ms
        super().__init__(**kwargs)

    def _create_run(
        self,
        creation_time: dt.datetime,
        experiment_name: str | None,
        fork_run_id: str | None,
        fork_step: float | None,
        inherit_configs: bool,
    ) -> None:
        # Mirrors neptune_scale/api/run.py Run._create_run (0.30.x) for a run without a fork point.
        if self._operations_repo is None or fork_run_id is not None:
            super()._create_run(creation_time, experiment_name, fork_run_id, fork_step, inherit_configs)
            return
        ms = self._nmig_creation_ms if self._nmig_creation_ms is not None else wire.datetime_ms(creation_time)
        create = CreateRunMessage(
            family=self._run_id,
            experiment_id=experiment_name,
            creation_time=timestamp_proto(ms),
            inherit_configs=inherit_configs,
        )
        self._operations_repo.save_create_run(create)


class RunSink:
    """One target run: the official Run in offline mode records operations; this process syncs them."""

    def __init__(
        self,
        *,
        project: str,
        api_token: str,
        run_id: str,
        experiment_name: str | None,
        creation_time: dt.datetime | None,
        log_directory: Path,
        clients: ClientPool,
    ) -> None:
        self.run_id = run_id
        self.project = project
        self.run = _MigratedRun(
            None if creation_time is None else wire.datetime_ms(creation_time),
            run_id=run_id,
            project=project,
            api_token=api_token,
            mode="offline",
            experiment_name=experiment_name,
            log_directory=log_directory,
            # The importing machine's console and git repository must never reach a migrated run.
            enable_console_log_capture=False,
            source_tracking_config=None,
        )
        self.work_dir: Path = self.run._storage_directory_path  # type: ignore[assignment]
        repo_path: Path = self.run._operations_repository_path
        self._repo: OperationsRepository = self.run._operations_repo  # type: ignore[assignment]
        # The sync side opens its own connection to the same log, as the client's sync process does.
        self._sync_repo = OperationsRepository(db_path=repo_path)
        self._sender = _Sender(api_token=api_token, family=run_id, operations_repository=self._sync_repo)
        self._status = _StatusTracker(api_token=api_token, project=project, operations_repository=self._sync_repo)
        self._uploader = _Uploader(project=project, api_token=api_token, operations_repository=self._sync_repo)
        self._sender._backend = clients.sender.get()  # type: ignore[assignment]
        self._status._backend = clients.status.get()  # type: ignore[assignment]
        self._uploader._api_client = clients.uploader.get()  # type: ignore[assignment]
        self._sender._nmig_status = self._status
        self._threads = (self._sender, self._status, self._uploader)
        self.progress = SyncProgress()
        for thread in self._threads:
            thread._sleep_time = SYNC_POLL_S
            thread._nmig_progress = self.progress
        self._started = False
        self._closed = False
        # (last sequence id, labels) of every batch of operations nmig saved, for error attribution
        self.op_labels: list[tuple[int, tuple[str, ...]]] = []
        # what was written at each path through the operation log (configs, tag sets, file references), to
        # read it back and send it again alone after a rejection
        self.written: dict[str, Any] = {}
        # file references (snapshot, path) kept back until their files are uploaded (release_file_refs)
        self._file_refs: list[tuple[UpdateRunSnapshot, str]] = []

    # ---- writing -------------------------------------------------------------------------------------

    def start_sync(self) -> None:
        """Start uploading the files and sending the operations at once. The file references are not in the
        log yet (assign_file and log_file keep them back): `release_file_refs` writes them once every upload
        is over, so a file reference never reaches the service before its bytes and a run interrupted at any
        moment holds no reference to a missing file (a resumed run re-uploads to the same destinations, which
        neptune-scale derives from run, path and step), while the uploads overlap with the run creation,
        configs and series instead of coming before them."""
        if self._started:
            return
        self._started = True
        for thread in self._threads:
            thread.start()

    def release_file_refs(self, upload_timeout_s: float = 600.0) -> None:
        """Once the uploads are over (or the uploader stopped, or the time is up: the upload's own error is
        then in the log, as before), write the file references kept back into the log for the sender."""
        if not self._file_refs:
            return
        deadline = time.monotonic() + upload_timeout_s
        while self._uploader.is_alive() and time.monotonic() < deadline:
            rounds = self.progress.rounds()
            if not self._sync_repo.get_file_upload_requests_count(limit=1):
                break
            self.progress.wait_past(rounds, SYNC_IDLE_S)
        refs, self._file_refs = self._file_refs, []
        for snapshot, path in refs:
            # the sender may already be confirming (and deleting) operations: the sequence id comes from the
            # save itself (operations_repository.py save_update_run_snapshots returns the last one), not
            # from the log's maximum as in _mark
            last = self._repo.save_update_run_snapshots([snapshot])
            self.op_labels.append((int(last), (path,)))
        self._sender.kick()

    def log_configs(self, configs: dict[str, Any]) -> None:
        if configs:
            self._repo.save_update_run_snapshots(config_snapshots(self.project, self.run_id, configs))
            self.written.update(configs)
            self._mark(configs.keys())
            self._sender.kick()

    def add_tags(self, tags: list[str], group_tags: bool) -> None:
        if tags:
            self.run.add_tags(tags, group_tags=group_tags)
            path = "sys/group_tags" if group_tags else "sys/tags"
            self.written[path] = list(tags)
            self._mark([path])
            self._sender.kick()

    def remove_tags(self, tags: list[str], group_tags: bool) -> None:
        """Tags removed in 2.x since the last import (neptune-scale Run.remove_tags, api/run.py 880)."""
        if tags:
            self.run.remove_tags(tags, group_tags=group_tags)
            self._mark(["sys/group_tags" if group_tags else "sys/tags"])
            self._sender.kick()

    def _upload_request(self, path: str, local: Path, size: int, mime_type: str | None, step: float | None) -> Any:
        """The Run's own upload request for a file (its destination naming; its uploader thread sends it)."""
        requests = self.run._prepare_files_for_upload({path: File(source=local, size=size, mime_type=mime_type)}, step=step)
        if not requests:
            raise OSError(f"neptune-scale could not prepare {local.name} for upload")
        return requests[0][1]

    def assign_file(self, path: str, local: Path, size: int, mime_type: str | None) -> None:
        request = self._upload_request(path, local, size, mime_type, None)
        ref = FileRef(path=request.destination, mime_type=request.mime_type, size_bytes=request.size_bytes)
        snapshot = UpdateRunSnapshot(timestamp=timestamp_proto(wire.datetime_ms(dt.datetime.now(dt.timezone.utc))))
        snapshot.assign[path].file_ref.CopyFrom(ref)
        self._repo.save_file_upload_requests([request])
        self._uploader.kick()
        self._file_refs.append((snapshot, path))
        self.written[path] = ref

    def log_file(self, path: str, local: Path, size: int, mime_type: str | None, micros: int, timestamp_ms: int) -> None:
        """One file-series point. The upload request is the Run's own (its destination naming, its upload
        thread); the snapshot carries the exact step and time (Run.log_files would put them through
        make_step and datetime_to_proto)."""
        request = self._upload_request(path, local, size, mime_type, micros / 1e6)
        snapshot = UpdateRunSnapshot(step=step_proto(micros), timestamp=timestamp_proto(timestamp_ms))
        snapshot.append[path].file_ref.CopyFrom(
            FileRef(path=request.destination, mime_type=request.mime_type, size_bytes=request.size_bytes)
        )
        self._repo.save_file_upload_requests([request])
        self._uploader.kick()
        self._file_refs.append((snapshot, path))

    def single_item_request(self, path: str) -> RunOperation:
        """A request carrying only the item written at `path` (a config, a tag set or a file attribute), to
        send it again alone when a request holding it was rejected."""
        value = self.written[path]
        if path in ("sys/tags", "sys/group_tags"):
            snapshots = list(MetadataSplitter(
                project=self.project, run_id=self.run_id, timestamp=dt.datetime.now(dt.timezone.utc), step=None,
                configs=None, metrics=None, files=None, file_series=None, add_tags={path: value}, remove_tags=None,
            ))
        elif isinstance(value, FileRef):
            snapshot = UpdateRunSnapshot(timestamp=timestamp_proto(wire.datetime_ms(dt.datetime.now(dt.timezone.utc))))
            snapshot.assign[path].file_ref.CopyFrom(value)
            snapshots = [snapshot]
        else:
            snapshots = config_snapshots(self.project, self.run_id, {path: value})
        return RunOperation(project=self.project, run_id=self.run_id, update_batch=UpdateRunSnapshots(snapshots=snapshots))

    def _mark(self, labels: Iterable[str]) -> None:
        # Operations the Run API saved: their sequence ids are found from the log's current maximum.
        seq_range = self._repo.get_operations_sequence_id_range()
        if seq_range is not None:
            self.op_labels.append((int(seq_range[1]), tuple(labels)))

    # ---- syncing -------------------------------------------------------------------------------------

    def pending(self) -> tuple[int, int]:
        """(operations not yet confirmed processed, files not yet uploaded): what wait_for_processing waits on."""
        return (
            self._sync_repo.get_operation_count(limit=1_000_000),
            self._sync_repo.get_file_upload_requests_count(limit=1_000_000),
        )

    def sync_alive(self) -> bool:
        return all(thread.is_alive() for thread in self._threads)

    def wait_for_submission(self, timeout_s: float) -> bool:
        """Until every operation recorded so far (the run creation first) has been accepted by the service,
        not necessarily processed yet: requests sent after this are accepted after them. False on timeout or
        when a sync thread stopped.

        ASSUMPTION: the service applies one run's requests in the order it accepted them, as the client itself
        relies on: its SenderThread (neptune_scale/sync/sync_process.py, SenderThread.work) submits the run
        creation and the updates after it back to back, without waiting for any status. So series may follow
        the run creation as soon as it is accepted, one status round trip (or more) earlier than waiting for it
        to be processed."""
        seq_range = self._repo.get_operations_sequence_id_range()
        last = int(seq_range[1]) if seq_range is not None else -1
        deadline = time.monotonic() + timeout_s
        while True:
            rounds = self.progress.rounds()
            if int(self._sender._last_queued_seq) >= last:
                return True
            if not self.sync_alive() or time.monotonic() > deadline:
                return False
            self.progress.wait_past(rounds, SYNC_IDLE_S)

    def wait_for_processing(self, timeout_s: float, files_too: bool = True) -> bool:
        """What Run.wait_for_processing waits for: every operation confirmed processed (and, with
        files_too, every file uploaded). False on timeout or when a sync thread stopped (a fatal client
        error, recorded in the log's errors)."""
        self._status.release()
        deadline = time.monotonic() + timeout_s
        while True:
            rounds = self.progress.rounds()
            ops, files = self.pending()
            if not ops and (not files or not files_too):
                return True
            if not self.sync_alive() or time.monotonic() > deadline:
                return False
            self.progress.wait_past(rounds, SYNC_IDLE_S)

    def drain_errors(self) -> list[ClientError]:
        """Every error the client recorded so far (removed from its log, as its ErrorsMonitor does)."""
        found: list[ClientError] = []
        while batch := self._sync_repo.get_errors(limit=1000):
            for record in batch:
                exc = record.deserialize_error()
                found.append(ClientError(_classify(exc), record.error_type, str(exc).strip(), record.sequence_id))
            self._sync_repo.delete_errors([r.error_id for r in batch if r.error_id is not None])
        return found

    def labels_for(self, sequence_id: int | None) -> tuple[str, ...]:
        """The attribute paths of the batch of operations holding `sequence_id` (empty when unknown)."""
        if sequence_id is None:
            return ()
        for last, labels in self.op_labels:
            if sequence_id <= last:
                return labels
        return ()

    def close(self) -> None:
        """Stop the sync threads and close the run; the log and its folder are removed once empty."""
        if self._closed:
            return
        self._closed = True
        started = [thread for thread in self._threads if thread.ident is not None]
        for thread in started:
            thread.interrupt()
        for thread in started:
            thread.join(timeout=30)
        self._sync_repo.close(cleanup_files=False)
        self.run.close()




# Direct requests: well under the client's 16 MB request limit, so a request never needs splitting. The
# points of one series go one request after another (a later one accepted first would put later steps before
# earlier ones), so each 429 holds its series up for a Retry-After: 100,000 points a request halves those
# waits against 50,000 (benchmarks/bench_faults.py: import at 20% 5xx + 20% 429, 2.7x -> 2.3x the clean time),
# for 303 MB of peak RSS instead of 269 MB on a 10M-point series (bench_import.py --case memory).
DIRECT_REQUEST_BYTES = min(8 * 1024 * 1024, MAX_REQUEST_SIZE_BYTES // 2)
DIRECT_REQUEST_POINTS = 100_000
# A float point's encoded size beyond its path's bytes, at most (wire.encode_float_snapshots: record tag and
# length, a step of two varints, a timestamp of two, the append map entry with its double).
FLOAT_POINT_BYTES = 64


def float_points_per_request(path: str) -> int:
    """How many float points of `path` one request carries: DIRECT_REQUEST_POINTS, fewer for a long path
    (a 1,000-byte path would make 50,000 points a 50 MB request, over the client's limit)."""
    return max(1, min(DIRECT_REQUEST_POINTS, DIRECT_REQUEST_BYTES // (FLOAT_POINT_BYTES + len(path.encode("utf-8")))))


@dataclass
class _Request:
    request_id: str
    labels: tuple[str, ...]
    points: int


class DirectSeriesSender:
    """Series points sent as UpdateRunSnapshots requests through the client's own submit/check_batch calls.

    Each request carries the points of one attribute, so a status error names its attribute exactly. As the
    client's StatusTrackingThread does, a status with code UNAVAILABLE means "not processed yet" (the real
    service ingests asynchronously) and any other non-OK code is an error mapped by code_to_exception.
    """

    def __init__(self, sink: RunSink, project: str) -> None:
        self._sink = sink
        self._project = project
        self._pending: list[_Request] = []
        self.errors: list[tuple[tuple[str, ...], ClientError]] = []
        self.points_confirmed = 0
        # The first error the client treats as fatal for the run or the project (its StatusTrackingThread
        # stops syncing on these: NeptuneProjectError and NeptuneRunError, sync_process.py _is_fatal_error):
        # once one is seen nothing more of the run is sent.
        self.fatal: ClientError | None = None
        self.points_not_sent = 0
        # send() may be called from several threads (one per series lane, replay._PipelinedSender): the list
        # of pending requests is changed under _lock, and one poll runs at a time
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()

    def new_request(self) -> RunOperation:
        return new_request(self._project, self._sink.run_id)

    def encoded_request(self, snapshots: bytes, points: int) -> EncodedOperation:
        """This run's request around `points` snapshots encoded by nmig.importer.wire."""
        return EncodedOperation(wire.wrap_update_batch(self._project, self._sink.run_id, snapshots), points)

    def send(self, request: RunOperation | EncodedOperation, labels: tuple[str, ...]) -> None:
        if self.fatal is not None:
            self.points_not_sent += operation_points(request)
            return
        response = self._sink._sender.submit(operation=request)
        if response is None or not response.request_ids:
            raise RuntimeError("the service answered a submit without a request id")
        with self._lock:
            self._pending.append(_Request(response.request_ids[-1], labels, operation_points(request)))

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet seen processed (as of the last poll; no request made)."""
        return len(self._pending)

    def poll(self) -> int:
        """Check the status of sent requests; returns how many are still being processed."""
        with self._poll_lock:
            return self._poll()

    def _poll(self) -> int:
        while self._pending:
            with self._lock:
                batch = self._pending[:1000]
            status = self._sink._status.check_batch(request_ids=[r.request_id for r in batch])
            if status is None:
                return len(self._pending)
            done = 0
            for request, request_status in zip(batch, status.statuses, strict=False):
                codes = list(request_status.code_by_count)
                if any(c.code == Code.UNAVAILABLE for c in codes):
                    break
                for code in codes:
                    if code.code != Code.OK:
                        exc = code_to_exception(code.detail)
                        error = ClientError(_classify(exc), type(exc).__name__, str(exc).strip(), None)
                        self.errors.append((request.labels, error))
                        if self.fatal is None and StatusTrackingThread._is_fatal_error(exc):
                            self.fatal = error
                self.points_confirmed += request.points
                done += 1
            with self._lock:
                del self._pending[:done]  # only this poll removes, and sends append after `batch`
            if done < len(batch):
                return len(self._pending)
        return 0

    def wait(self, timeout_s: float) -> bool:
        # the same back-off as the status thread's (_StatusTracker): each round is a status request
        deadline = time.monotonic() + timeout_s
        delay = SYNC_POLL_S
        while self.poll():
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, STATUS_POLL_MAX_S)
        return True
