"""Reading a Neptune 2.x project through the official `neptune` 1.x client, fast.

Everything the exporter reads goes through the client's own authenticated session (token exchange, refresh,
retries): `neptune.init_project(mode="read-only")` logs in and lists runs with the client's public table API,
and the per-run reads call the same Swagger operations the client's backend calls, on its own swagger clients,
but ask for the response as raw JSON instead of letting bravado build one model object per point. That, and
several pages in flight, is where the speed comes from; nothing here holds the token or opens a connection of
its own.

What is asked for follows the spec the server serves (the client downloads it at start-up): float series are
paged by `offset` where the server declares it and by `skipToStep` otherwise (Neptune's published snapshots
have only skipToStep; the released client pages by offset), string series are asked for whole values where
`maxSingleValueLength` is declared, and an operation the server lacks makes only the attribute types that need
it unreadable, each reported (`unsupported_types`). Every operation and parameter asked for is in
`API_CALLS`, which tests/conformance/test_legacy_conformance.py holds to the published specs.

The client internals this relies on are listed in `CLIENT_INTERNALS` and checked by `check_client_internals()`,
which a test runs against the pinned client so an upgrade that moves them fails loudly instead of quietly.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from nmig.errors import NmigError
from nmig.exporter.pages import ValuePage, decode_value_page
from nmig.loopback import prepare_client_env
from nmig.schema.format import encode_datetime
from nmig.secrets import redact

# (module, attribute) pairs and (object, attribute) names the fast path uses; see check_client_internals().
CLIENT_INTERNALS: tuple[tuple[str, str], ...] = (
    ("neptune.internal.backends.hosted_client", "DEFAULT_REQUEST_KWARGS"),
    ("neptune.common.backends.utils", "with_api_exceptions_handler"),
    ("neptune.internal.backends.hosted_file_operations", "_download_raw_data"),
    ("neptune.internal.backends.hosted_file_operations", "_get_download_url"),
    ("neptune.internal.backends.utils", "build_operation_url"),
    ("bravado.client", "construct_request"),
    ("bravado.config", "RequestConfig"),
    ("neptune.internal.backends.utils", "MissingApiClient"),
    ("neptune.internal.backends.nql", "NQLEmptyQuery"),
    ("neptune.internal.container_type", "ContainerType"),
    ("neptune.metadata_containers.metadata_container", "MetadataContainer"),
    ("neptune.metadata_containers.utils", "build_raw_query"),
    ("neptune.exceptions", "NeptuneInvalidQueryException"),
    ("neptune.internal.backends.hosted_neptune_backend", "HostedNeptuneBackend"),
    ("neptune.internal.credentials", "Credentials"),
    ("neptune.internal.backends.hosted_client", "create_http_client"),
)
# Attributes of a table row (neptune.table.TableEntry) read directly: its container id and raw attributes.
TABLE_ENTRY_ATTRIBUTES = ("_id", "_attributes")
# How every listing is ordered (see list_entities for why not the client default).
LISTING_ORDER: dict[str, Any] = {"sort_by": "sys/id", "ascending": True}
# Rows per listing request. The client asks for 100 (NEPTUNE_FETCH_TABLE_STEP_SIZE, its documented setting,
# read at every listing: neptune/internal/backends/hosted_neptune_backend.py search_leaderboard_entries), so a
# project of 100,000 runs took 1,000 round trips one after another before the first run was exported.
# ASSUMPTION: the 2.x server answers 1,000 rows per request (no spec gives a maximum; offset + limit stays
# within the client's 10,000 either way). If a listing with it fails, it is asked again with the client's own
# size; a user's NEPTUNE_FETCH_TABLE_STEP_SIZE always wins. Measured in benchmarks/bench_many_runs.py.
LISTING_STEP = 1000
_STEP_VARIABLE = "NEPTUNE_FETCH_TABLE_STEP_SIZE"
_LISTING_LOCK = threading.Lock()  # around the moment a listing is created with the variable set (LegacySource._table)
BACKEND_ATTRIBUTES = ("leaderboard_client", "backend_client", "artifacts_client", "get_display_address")
PROJECT_ATTRIBUTES = ("_backend", "_id", "_project_id")
# Every operation of the 2.x API the exporter calls by name on the client's swagger clients, with every
# parameter it may send (call_raw refuses any other; the conformance test holds this table to the real specs).
API_CALLS: dict[str, frozenset[str]] = {
    "listProjects": frozenset({"organizationIdentifier", "offset", "limit"}),
    "getProject": frozenset({"projectIdentifier"}),
    "getProjectDetails": frozenset({"projectIdentifier"}),
    "getExperimentAttributes": frozenset({"experimentId"}),
    "getFloatSeriesValues": frozenset({"experimentId", "attribute", "limit", "offset", "skipToStep"}),
    "getStringSeriesValues": frozenset({"experimentId", "attribute", "limit", "offset", "maxSingleValueLength"}),
    "getChannelValues": frozenset({"channelId", "limit", "offset"}),
    "getImageSeriesValue": frozenset({"experimentId", "attribute", "index"}),
    "downloadAttribute": frozenset({"experimentId", "attribute"}),
    "prepareForDownloadFileSetAttributeZip": frozenset({"experimentId", "attribute"}),
    "getDownloadPrepareRequest": frozenset({"id"}),
    "getArtifactAttribute": frozenset({"experimentId", "attribute"}),
    "listArtifactFiles": frozenset({"projectIdentifier", "hash"}),
}
# Which swagger client serves each operation.
_CLIENT_OF = {
    "listProjects": "backend_client",
    "getProject": "backend_client",
    "getProjectDetails": "backend_client",
    "listArtifactFiles": "artifacts_client",
}
# Without these nothing can be read: a server lacking them is refused as a whole.
ESSENTIAL_OPERATIONS = ("getExperimentAttributes",)
# The operations each attribute type needs; a server lacking one makes that type unreadable (reported).
OPERATIONS_BY_TYPE: dict[str, tuple[str, ...]] = {
    "floatSeries": ("getFloatSeriesValues",),
    "stringSeries": ("getStringSeriesValues",),
    "imageSeries": ("getChannelValues", "getImageSeriesValue"),
    "fileSeries": ("getChannelValues", "getImageSeriesValue"),
    "file": ("downloadAttribute",),
    "fileSet": ("prepareForDownloadFileSetAttributeZip", "getDownloadPrepareRequest"),
    "artifact": ("getArtifactAttribute", "listArtifactFiles"),
}
# The longest string-series value asked for where the server declares maxSingleValueLength (its type is
# int32 in leaderboard.json): all of it.
WHOLE_VALUE_LENGTH = 2**31 - 1
# How long a FileSet zip may take to be prepared before the attribute is given up on (reported).
ZIP_PREPARE_TIMEOUT = 600.0


class ClientInternalsChanged(NmigError):
    """The installed `neptune` client no longer has what the fast path uses."""


def check_client_internals(project: Any | None = None) -> None:
    """Raise ClientInternalsChanged naming every missing piece; with `project`, also check its backend."""
    import importlib

    missing: list[str] = []
    for module_name, name in CLIENT_INTERNALS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not hasattr(module, name):
            missing.append(f"{module_name}.{name}")
    if project is not None:
        missing += [f"project.{a}" for a in PROJECT_ATTRIBUTES if not hasattr(project, a)]
        backend = getattr(project, "_backend", None)
        missing += [f"backend.{a}" for a in BACKEND_ATTRIBUTES if not hasattr(backend, a)]
    if not hasattr(
        importlib.import_module("neptune.metadata_containers.metadata_container").MetadataContainer,
        "_fetch_entries",
    ):
        missing.append("MetadataContainer._fetch_entries")
    if missing:
        raise ClientInternalsChanged(
            "the installed neptune client differs from the one nmig was built for; missing: "
            + ", ".join(missing)
        )


@dataclass(frozen=True)
class EntityRef:
    """One run, model or model version as listed by the project table."""

    kind: str  # "run" | "model" | "model_version"
    sys_id: str
    container_id: str  # the server's id of the container, used in every per-entity request
    custom_run_id: str | None
    modification_time: str | None  # "YYYY-MM-DDTHH:MM:SS.mmmZ"
    trashed: bool
    url: str
    size: float = 0.0  # sys/size as listed (bytes the server says it stores; 0 when not given): the largest go first


def _listed_size(value: Any) -> float:
    """A listed sys/size as a non-negative finite number (anything else, as from an untrusted server: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    size = float(value)
    return size if 0.0 <= size < float("inf") else 0.0


def project_visibility(value: str) -> str:
    """A project's visibility as ProjectVisibilityDTO has it ("priv" | "pub" | "workspace"), from that or from
    the project container's sys/visibility ("private" | "public"); anything else is kept as given."""
    return {"private": "priv", "public": "pub"}.get(value, value)


def datetime_or_none(value: Any) -> str | None:
    """A datetime from the API in the bundle's form, or None when absent or unreadable."""
    try:
        return encode_datetime(value) if value is not None else None
    except (TypeError, ValueError):  # the client hands over the raw text when it cannot parse a date
        return None


def _client_error_message(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # Neptune's exception texts are long multi-line banners; one line is enough for a summary.
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not set(line.strip()) <= set("-=")
    ]
    return redact(" ".join(lines)[:500])


def skip_iri_grammar() -> None:
    """Keep jsonschema from compiling its IRI grammar when the neptune client is imported: ~1.3 s of CPU in
    every export (measured with `python -X importtime -c "import neptune"`: rfc3987_syntax.syntax_helpers
    builds a lark parser at import). The client builds its swagger clients with bravado-core, which pulls
    jsonschema[format-nongpl], whose format module imports rfc3987_syntax, if installed, only to check the
    "iri" and "iri-reference" string formats (jsonschema/_format.py). Those are formats of JSON Schema draft 7
    and later; bravado validates Swagger 2.0 (draft 4) and no 2.x spec names them (none of the specs in
    /work/shared/reference/neptune-api/ has an "iri" format), so hiding the module changes no check: the
    import fails as if it were not installed, which jsonschema handles (`suppress(ImportError)`). A process
    that imported it already keeps it."""
    import sys

    sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]


# Threads now waiting before a quick retry (a Retry-After, or the back-off after a 5xx): no request of theirs is
# at the server, so a pager does not count them against its requests in flight (entity.EntityExporter._pages).
RESTING: set[int] = set()
_quick_retry_class: Any = None
# The stop signal of the work each thread now does under `abandonable` (thread id -> its event).
_STOPS: dict[int, threading.Event] = {}


class Abandoned(Exception):
    """Raised in a thread whose work was given up (`abandonable`) when it would wait before a quick retry."""


@contextlib.contextmanager
def abandonable(stop: threading.Event) -> Iterator[None]:
    """Run the caller's requests so that `stop.set()`, from any thread, ends their waits before a quick retry:
    the wait under way returns at once and raises Abandoned, as does any later one. The request under way at
    the server is not cut; work given up (a hedged page whose twin answered first) ends within one answer
    instead of waiting out its Retry-Afters while the export waits for its threads."""
    ident = threading.get_ident()
    _STOPS[ident] = stop
    try:
        yield
    finally:
        if _STOPS.get(ident) is stop:
            del _STOPS[ident]


def quick_retry() -> Any:
    """The urllib3 `Retry` of every session the client builds: nmig.transient's policy (see
    retry_transient_answers_quickly). A Retry-After is waited out as urllib3 reads it, however long: the
    client would wait it out too (neptune/common/backends/utils.py:60-66). While it waits, the thread is in
    RESTING."""
    global _quick_retry_class
    if _quick_retry_class is None:
        from urllib3.util.retry import Retry

        class QuickRetry(Retry):  # type: ignore[misc]
            def sleep(self, response: Any = None) -> None:
                # urllib3's own Retry.sleep waits the response's Retry-After when there is one, else the
                # back-off (urllib3/util/retry.py, sleep_for_retry and _sleep_backoff): the same waits, through
                # its public getters, on the thread's stop signal when it has one (abandonable).
                seconds = self.get_retry_after(response) if self.respect_retry_after_header and response else None
                if not seconds:  # absent, or 0: the back-off, as urllib3 does
                    seconds = self.get_backoff_time()
                ident = threading.get_ident()
                stop = _STOPS.get(ident)
                RESTING.add(ident)
                try:
                    if stop is None:
                        time.sleep(max(seconds, 0.0))
                    elif stop.is_set() or stop.wait(max(seconds, 0.0)):
                        raise Abandoned("given up while waiting to ask again")
                finally:
                    RESTING.discard(ident)

        _quick_retry_class = QuickRetry

    from nmig.transient import QUICK_BACKOFF, QUICK_BACKOFF_JITTER, QUICK_RETRIES, TRANSIENT_STATUSES

    return _quick_retry_class(
        total=QUICK_RETRIES,
        connect=0,  # connection errors, read errors and time-outs stay the client's (its own loop and messages)
        read=0,
        other=0,
        status=QUICK_RETRIES,
        status_forcelist=TRANSIENT_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD"}),  # the reads: the export writes nothing
        backoff_factor=QUICK_BACKOFF,
        backoff_jitter=QUICK_BACKOFF_JITTER,
        respect_retry_after_header=True,  # a 429's (or 503's) Retry-After is waited out, as the client does
        raise_on_status=False,  # when they run out, the client gets the last answer and its own loop goes on
    )


def retry_transient_answers_quickly() -> None:
    """Make every HTTP session the neptune client creates from now on ask a transient answer (5xx, 429) again
    at once, on the same connection pool, before the client's own retry loop sees it. Once per process.

    Why: the client's loop (`with_api_exceptions_handler`, neptune/common/backends/utils.py:69-160) sleeps
    2**n s after a 5xx, n counting every earlier failure of the request, 429s included (utils.py:102,119,147),
    and opening a project is a chain of such requests one after another (spec downloads,
    hosted_client.py:115,186; getClientConfig, hosted_client.py:124-141; getProject). At 20% 5xx + 20% 429
    that chain alone took ~19 s of an export whose clean run took 2.8 s (benchmarks/bench_faults.py). The
    quick retries (nmig.transient) come first; the client's loop, with its 60 s budget
    (NEPTUNE_RETRIES_TIMEOUT), is what a lasting outage gets.

    How: the client builds each session in `hosted_client.create_http_client` (hosted_client.py:81-98), which
    `_get_token_client` and `create_http_client_with_auth` call by name (hosted_client.py:112,157), the first
    right before the first request; the function is wrapped here so each new RequestsClient's adapters get
    the `Retry` above (HTTPAdapter.max_retries, requests' documented way to retry). Tests pin both calls."""
    from neptune.internal.backends import hosted_client

    original = hosted_client.create_http_client
    if getattr(original, "nmig_quick_retry", False):
        return

    def create_http_client(*args: Any, **kwargs: Any) -> Any:
        http_client = original(*args, **kwargs)
        for adapter in http_client.session.adapters.values():
            adapter.max_retries = quick_retry()
        return http_client

    create_http_client.nmig_quick_retry = True  # type: ignore[attr-defined]
    hosted_client.create_http_client = create_http_client


# The client opens a project with a chain of spec downloads, one after another, the backend's fetched three
# times (hosted_client.py:115,176,186,196: the token client, the backend, leaderboard and artifacts clients).
SPEC_PATHS = ("/api/backend/swagger.json", "/api/leaderboard/swagger.json", "/api/artifacts/swagger.json")


class _SpecDownloads:
    """Each spec URL downloaded once per process, and the three of one server side by side. Thread-safe."""

    def __init__(self) -> None:
        self._texts: dict[str, Any] = {}  # url -> Future of the spec as JSON text
        self._lock = threading.Lock()
        self._pool: Any = None

    def load(self, url: str, download: Any) -> dict[str, Any]:
        """The spec at `url`, downloaded with `download(url)` (the caller's own client), which also starts the
        other specs of the same server. A failed download is forgotten: the caller's own failure goes to the
        client's retry loop (around create_swagger_client, neptune/internal/backends/utils.py:121), another
        caller's is followed by the caller's own download."""
        from concurrent.futures import ThreadPoolExecutor

        base = next((url[: -len(p)] for p in SPEC_PATHS if url.endswith(p)), None)
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(len(SPEC_PATHS), thread_name_prefix="nmig-specs")
            ours = url not in self._texts  # False: another caller's client started it (maybe unauthenticated)
            wanted = [url] + ([base + p for p in SPEC_PATHS] if base is not None else [])
            for each in wanted:
                if each not in self._texts:
                    self._texts[each] = self._pool.submit(lambda u: json.dumps(download(u)), each)
            future = self._texts[url]
        try:
            return json.loads(future.result())  # a fresh copy: bravado builds its Spec from it
        except Exception:
            with self._lock:
                if self._texts.get(url) is future:
                    del self._texts[url]
            if ours:
                raise
        # Started by another client and failed (a server may keep a spec for the authenticated session, and
        # the client does not retry a 401): this caller downloads it with its own client, as it would have.
        return download(url)


_SPECS = _SpecDownloads()


def load_specs_together() -> None:
    """Make the client's spec downloads (bravado's `Loader.load_spec`, which `SwaggerClient.from_url` calls,
    bravado/client.py:97) go through _SPECS: each spec once, the three of a server at the same time. Why:
    opening a project is a chain of requests one after another, and at 20% 429 each link waits out a
    Retry-After as often as not (benchmarks/bench_faults.py); over latency each link is a round trip. A spec
    is a document of the server, the same for every client of it; one that only the authenticated session
    may read still is: a download started by another client that fails is made again by the caller's own.
    Once per process."""
    import bravado.client
    from bravado.swagger_model import Loader

    if getattr(bravado.client.Loader, "nmig_specs_together", False):
        return

    class LoaderOnce(Loader):  # type: ignore[misc]
        nmig_specs_together = True

        def load_spec(self, spec_url: str, base_url: Any = None) -> Any:
            loader = Loader(self.http_client, request_headers=self.request_headers)
            return _SPECS.load(spec_url, loader.load_spec)

    bravado.client.Loader = LoaderOnce


def import_client() -> None:
    """Import the neptune client and the parts of it opening a project uses (most of a second of CPU), for a
    process that has time for it now: `nmig migrate`'s export child while it waits at its gate."""
    skip_iri_grammar()
    import neptune  # noqa: F401
    from neptune.internal.backends import hosted_client  # noqa: F401


def open_quickly() -> None:
    """What the export does to the neptune client before opening anything with it (see each)."""
    retry_transient_answers_quickly()
    load_specs_together()


class BackendCalls:
    """2.x API operations called on a `neptune` backend's own swagger clients and authenticated session, with
    the client's own retry loop, the body taken as raw JSON. Thread-safe."""

    def __init__(self, backend: Any) -> None:
        from bravado.client import construct_request
        from bravado.config import RequestConfig
        from neptune.common.backends.utils import with_api_exceptions_handler
        from neptune.internal.backends.hosted_client import DEFAULT_REQUEST_KWARGS

        self._backend = backend
        self._construct_request = construct_request
        self._request_config_class = RequestConfig
        self._default_options: dict[str, Any] = DEFAULT_REQUEST_KWARGS["_request_options"]
        # The client's retry loop (5xx, 429 with Retry-After, connection errors, token expiry) around each request.
        self._request = with_api_exceptions_handler(self._request_once)
        _skip_redundant_environment_lookups(backend.leaderboard_client.swagger_spec.http_client)

    # ---- raw requests ------------------------------------------------------------------------------

    def _request_once(
        self, client: Any, operation: str, extra_headers: dict[str, str] | None, params: dict[str, Any]
    ) -> bytes:
        """One request of a Swagger operation on the client's own swagger client and session; the body as
        bytes (no bravado model per item: that unmarshalling is what makes the client slow)."""
        options = dict(self._default_options)
        if extra_headers:
            options["headers"] = {**options.get("headers", {}), **extra_headers}
        request_config = self._request_config_class(options, True)
        request = self._construct_request(getattr(client.api, operation), options, **params)
        future = client.swagger_spec.http_client.request(
            request, operation=None, request_config=request_config
        )
        return future.response().incoming_response.raw_bytes

    def call_raw(
        self, client_name: str, operation: str, headers: dict[str, str] | None = None, **params: Any
    ) -> bytes:
        undeclared = set(params) - API_CALLS[operation]
        if undeclared:  # a programming error: API_CALLS is what the conformance test checks
            raise AssertionError(f"{operation} called with parameters outside API_CALLS: {sorted(undeclared)}")
        return self._request(getattr(self._backend, client_name), operation, headers, params)

    def call(
        self, client_name: str, operation: str, headers: dict[str, str] | None = None, **params: Any
    ) -> Any:
        return json.loads(self.call_raw(client_name, operation, headers, **params))


class LegacySource(BackendCalls):
    """An open, read-only connection to one 2.x project. Thread-safe for the reads below."""

    def __init__(
        self, project: str, api_token: str, *, quiet: bool = False, zip_prepare_timeout: float | None = None
    ) -> None:
        self.zip_prepare_timeout = ZIP_PREPARE_TIMEOUT if zip_prepare_timeout is None else zip_prepare_timeout
        prepare_client_env(api_token)
        skip_iri_grammar()
        import neptune

        open_quickly()

        # The client's own info lines ("Neptune initialized. Open in the app", "Shutting down background jobs")
        # describe its session, not the export; its warnings stay visible unless --quiet.
        logging.getLogger("neptune").setLevel(logging.ERROR if quiet else logging.WARNING)

        self._project = _open_project(neptune, project, api_token)
        check_client_internals(self._project)
        super().__init__(self._project._backend)
        self.project_uuid: str = self._project._project_id
        self.project_container_id: str = self._project._id
        self.workspace, _, self.project_name = project.partition("/")

        from neptune.common.backends.utils import with_api_exceptions_handler
        from neptune.internal.backends.hosted_file_operations import _download_raw_data, _get_download_url
        from neptune.internal.backends.utils import build_operation_url

        self._download_raw = _download_raw_data
        self._get_download_url = with_api_exceptions_handler(_get_download_url)
        self._build_url = build_operation_url
        self.operations = self._served_operations()
        lacking = [op for op in ESSENTIAL_OPERATIONS if op not in self.operations]
        if lacking:
            raise NmigError(f"the server's API has no {', '.join(lacking)}: nothing of project {project} can be read")
        float_params = self.operations.get("getFloatSeriesValues", frozenset())
        # Offset pages can be asked for several at a time; skipToStep pages only one after another.
        self.float_paging: str | None = (
            "offset" if "offset" in float_params else "skipToStep" if "skipToStep" in float_params else None
        )
        self.unsupported_types: dict[str, str] = {}
        for type_, needed in OPERATIONS_BY_TYPE.items():
            absent = [op for op in needed if op not in self.operations]
            if absent:
                self.unsupported_types[type_] = f"the server's API has no {', '.join(absent)}; not exported"
        if "floatSeries" not in self.unsupported_types and self.float_paging is None:
            self.unsupported_types["floatSeries"] = (
                "the server's getFloatSeriesValues has neither offset nor skipToStep paging; not exported"
            )

    def _served_operations(self) -> dict[str, frozenset[str]]:
        """The operations of API_CALLS the server's loaded specs declare, each with its parameter names."""
        from neptune.internal.backends.utils import MissingApiClient

        served: dict[str, frozenset[str]] = {}
        for operation in API_CALLS:
            client = getattr(self._backend, _CLIENT_OF.get(operation, "leaderboard_client"))
            if isinstance(client, MissingApiClient):  # the server lacks the feature (e.g. artifacts)
                continue
            try:
                callable_operation = getattr(client.api, operation)
            except AttributeError:
                continue
            served[operation] = frozenset(callable_operation.operation.params)
        return served

    # ---- lifecycle ---------------------------------------------------------------------------------

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._project.stop()

    def __enter__(self) -> LegacySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _operation_url(self, operation: str) -> str:
        client = self._backend.leaderboard_client
        return self._build_url(
            client.swagger_spec.api_url, getattr(client.api, operation).operation.path_name
        )

    @contextlib.contextmanager
    def _stream(self, url: str, query: dict[str, Any] | None, accept: str | None) -> Iterator[Any]:
        http_client = self._backend.leaderboard_client.swagger_spec.http_client
        headers = {"Accept": accept} if accept else {}
        response = self._download_raw(http_client=http_client, url=url, query_params=query, headers=headers)
        try:
            yield response
        finally:
            response.close()

    # ---- project -----------------------------------------------------------------------------------

    def resolved_names(self) -> tuple[str, str]:
        """(workspace, project) as the server named them when the client opened the project (getProject's
        organizationName and name, hosted_neptune_backend.py get_project), else as given."""
        resolved = getattr(self._project, "_project_api_object", None)
        workspace, name = getattr(resolved, "workspace", None), getattr(resolved, "name", None)
        if isinstance(workspace, str) and workspace and isinstance(name, str) and name:
            return workspace, name
        return self.workspace, self.project_name

    def project_info(self, project_attributes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Workspace, name, key, visibility ("priv" | "pub" | "workspace", as ProjectVisibilityDTO) and
        description of the project, and where each of key, visibility and description came from
        (`metadata_sources`): getProjectDetails' ProjectWithRoleDTO where the server has it, else the project
        container's own sys/id, sys/visibility and sys/description. getProject's ProjectDTO has neither
        visibility nor description (backend.json)."""
        identifier = f"{self.workspace}/{self.project_name}"
        operation = "getProjectDetails" if "getProjectDetails" in self.operations else "getProject"
        try:
            raw = self.call("backend_client", operation, projectIdentifier=identifier)
        except Exception:
            if operation == "getProject":
                raise
            # Details refused (a role the token lacks, a server fault after retries): the key still comes from
            # getProject, visibility and description from the project's own sys/* below.
            operation = "getProject"
            raw = self.call("backend_client", operation, projectIdentifier=identifier)
        sys_attributes = self._project_sys_attributes(project_attributes)
        found: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for field, dto_field, sys_path in (
            ("key", "projectKey", "sys/id"),
            ("visibility", "visibility", "sys/visibility"),
            ("description", "description", "sys/description"),
        ):
            value = raw.get(dto_field)
            if isinstance(value, str) and (value or field == "description"):
                found[field], sources[field] = value, f"{operation}.{dto_field}"
            elif isinstance(sys_attributes.get(sys_path), str):
                found[field], sources[field] = sys_attributes[sys_path], f"project {sys_path}"
            else:
                found[field] = None
        if found["visibility"] is not None:
            found["visibility"] = project_visibility(found["visibility"])
        return {
            "workspace": raw.get("organizationName") or self.workspace,
            "project": raw.get("name") or self.project_name,
            **found,
            "metadata_sources": sources,
            "url": self._backend.get_project_url(self.project_uuid, self.workspace, self.project_name),
        }

    def _project_sys_attributes(self, attributes: list[dict[str, Any]] | None) -> dict[str, Any]:
        """The string sys/* values of the project container (`attributes`, read here when not given; empty
        when they cannot be read)."""
        if attributes is None:
            try:
                attributes = self.attributes(self.project_container_id)
            except Exception:  # metadata has another source (getProjectDetails); absence is reported as None
                return {}
        values = {}
        for attribute in attributes:
            name = attribute.get("name")
            props = attribute.get(f"{attribute.get('type')}Properties") or {}
            if isinstance(name, str) and name.startswith("sys/") and isinstance(props.get("value"), str):
                values[name] = props["value"]
        return values

    def list_entities(self, kind: str, query: str | None, include_trashed: bool) -> list[EntityRef]:
        """Runs (filtered by `query`), models or model versions, through the client's table API. Listings may run
        side by side: the page size reaches the client through os.environ, read when a listing is created
        (search_leaderboard_entries, hosted_neptune_backend.py:1081), so only that moment is one at a time."""
        with _LISTING_LOCK:  # read under the lock: another listing sets it for a moment under it
            users_own = bool(os.environ.get(_STEP_VARIABLE))
        if users_own:
            return self._list_entities(kind, query, include_trashed, None)
        try:
            return self._list_entities(kind, query, include_trashed, LISTING_STEP)
        except ClientInternalsChanged:
            raise
        except NmigError as exc:
            if "rejected the query" in str(exc):
                raise
        except Exception:  # the larger page refused, or a transient failure: asked once more the client's way
            pass
        return self._list_entities(kind, query, include_trashed, None)

    def _table(self, kind: str, query: str | None, trashed: bool | None, columns: list[str], step: int | None) -> Any:
        """The client's lazy table of one listing (nothing asked yet), created with `step` rows per request
        (None: the client's own). The client pages it as it is iterated, outside the lock."""
        with _LISTING_LOCK:
            # The one warning the client's table gives as it is read: a sys/modification_time it cannot parse
            # comes as text (neptune/metadata_containers/utils.py parse_dates), which datetime_or_none reads.
            warnings.filterwarnings("ignore", message="Date parsing failed")
            if step is not None:
                os.environ[_STEP_VARIABLE] = str(step)
            try:
                with warnings.catch_warnings():
                    # The client flags the model registry as deprecated on every call; exporting it is the point.
                    warnings.simplefilter("ignore")
                    # Sorted by sys/id ascending, not the client's default (creation time, newest first): past
                    # 10,000 rows the client continues with `sort column > last value`, which with a descending
                    # sort repeats rows and never reaches the oldest ones (shown in the legacy emulator's tests).
                    # Assumption: the 2.x server orders sys/id and compares it with `>` the same way (as strings).
                    if kind == "run":
                        return self._project.fetch_runs_table(
                            query=query, trashed=trashed, columns=columns, progress_bar=False, **LISTING_ORDER
                        )
                    if kind == "model":
                        return self._project.fetch_models_table(
                            trashed=trashed, columns=columns, progress_bar=False, **LISTING_ORDER
                        )
                    return self._model_versions_table(trashed, columns)
            finally:
                if step is not None:
                    os.environ.pop(_STEP_VARIABLE, None)

    def _list_entities(self, kind: str, query: str | None, include_trashed: bool, step: int | None) -> list[EntityRef]:
        from neptune.common.exceptions import NeptuneException
        from neptune.exceptions import NeptuneInvalidQueryException

        # sys/size: a system attribute of every run (SystemAttributesDTO.size, a FloatAttributeDTO, leaderboard.json
        # :12206-12268), asked for only to export the largest first; a server that leaves it out gives listing order
        columns = ["sys/id", "sys/custom_run_id", "sys/modification_time", "sys/trashed", "sys/size"]
        trashed = None if include_trashed else False
        try:
            table = self._table(kind, query, trashed, columns, step)
            rows = list(table)  # no catch_warnings here: listings run side by side, and it is process-wide
        except ValueError as exc:
            # The client first asks for the type of its sort column (sys/creation_time) among objects of this
            # kind; when there are none, the column is "not present" and it raises before listing anything.
            if "not present in the table" in str(exc):
                return []
            raise
        except NeptuneInvalidQueryException as exc:
            raise NmigError(f"the server rejected the query {query!r}: {_server_message(exc)}") from None
        except NeptuneException as exc:
            raise NmigError(f"cannot list the {kind}s of the project: {_client_error_message(exc)}") from None
        refs = []
        seen: set[str] = set()
        for row in rows:
            if not all(hasattr(row, a) for a in TABLE_ENTRY_ATTRIBUTES):
                raise ClientInternalsChanged(f"neptune's table rows lack {', '.join(TABLE_ENTRY_ATTRIBUTES)}")
            values = {a.path: a.properties.get("value") for a in row._attributes}
            sys_id = values.get("sys/id")
            if not isinstance(sys_id, str) or sys_id in seen:
                continue  # a row repeated across the client's pages is listed once
            seen.add(sys_id)
            refs.append(
                EntityRef(
                    kind=kind,
                    sys_id=sys_id,
                    container_id=row._id,
                    custom_run_id=values.get("sys/custom_run_id") or None,
                    modification_time=datetime_or_none(values.get("sys/modification_time")),
                    trashed=bool(values.get("sys/trashed")),
                    url=self._entity_url(kind, row._id, sys_id),
                    size=_listed_size(values.get("sys/size")),
                )
            )
        return refs

    def _model_versions_table(self, trashed: bool | None, columns: list[str]) -> Any:
        # The client lists versions per model (fetch_model_versions_table); asking for every version of the
        # project at once is the same leaderboard search without the model filter, one listing instead of one
        # per model.
        from neptune.internal.backends.nql import NQLEmptyQuery
        from neptune.internal.container_type import ContainerType
        from neptune.metadata_containers.metadata_container import MetadataContainer
        from neptune.metadata_containers.utils import build_raw_query

        query = build_raw_query("", trashed=trashed) if trashed is not None else NQLEmptyQuery()
        return MetadataContainer._fetch_entries(
            self._project,
            child_type=ContainerType.MODEL_VERSION,
            query=query,
            columns=columns,
            limit=None,
            progress_bar=False,
            **LISTING_ORDER,
        )

    def _entity_url(self, kind: str, container_id: str, sys_id: str) -> str:
        if kind == "run":
            return self._backend.get_run_url(container_id, self.workspace, self.project_name, sys_id)
        if kind == "model":
            return self._backend.get_model_url(container_id, self.workspace, self.project_name, sys_id)
        model_sys_id = sys_id.rsplit("-", 1)[0]
        return self._backend.get_model_version_url(
            container_id, model_sys_id, self.workspace, self.project_name, sys_id
        )

    # ---- one entity --------------------------------------------------------------------------------

    def attributes(self, container_id: str) -> list[dict[str, Any]]:
        """Every attribute of a container with its raw properties, in one request."""
        raw = self.call("leaderboard_client", "getExperimentAttributes", experimentId=container_id)
        return list(raw.get("attributes") or [])

    def series_page(
        self, kind: str, container_id: str, path: str, offset: int, limit: int, skip_to_step: float | None = None
    ) -> ValuePage:
        """One page of a float or string series as an Arrow `ValuePage`: from `offset`, or for float series
        of a server paging by skipToStep, from `skip_to_step` (None: the first page)."""
        params: dict[str, Any] = {"experimentId": container_id, "attribute": path, "limit": limit}
        if kind == "float":
            operation = "getFloatSeriesValues"
            if self.float_paging == "offset":
                params["offset"] = offset
            elif skip_to_step is not None:
                params["skipToStep"] = skip_to_step
        else:
            operation = "getStringSeriesValues"
            params["offset"] = offset
            if "maxSingleValueLength" in self.operations.get(operation, ()):
                params["maxSingleValueLength"] = WHOLE_VALUE_LENGTH
        return decode_value_page(self.call_raw("leaderboard_client", operation, **params), kind)

    def channel_page(self, channel_id: str, offset: int, limit: int) -> dict[str, Any]:
        """One page of a channel's values (LimitedChannelValuesDTO): where a file series keeps its points'
        steps (`x`), timestamps and, in `y.imageValue`, names and descriptions."""
        page = self.call("leaderboard_client", "getChannelValues", channelId=channel_id, offset=offset, limit=limit)
        if not isinstance(page, dict):
            raise ValueError("the channel values are not a JSON object")
        return page

    @contextlib.contextmanager
    def open_file(self, container_id: str, path: str) -> Iterator[IO[bytes]]:
        url = self._operation_url("downloadAttribute")
        query = {"experimentId": container_id, "attribute": path}
        with self._stream(url, query, "application/octet-stream") as response:
            response.raw.decode_content = True
            yield response.raw

    @contextlib.contextmanager
    def open_file_series_item(
        self, container_id: str, path: str, index: int
    ) -> Iterator[tuple[IO[bytes], str]]:
        """The content of one FileSeries point and the extension its content type gives (as the client does)."""
        url = self._operation_url("getImageSeriesValue")
        query = {"experimentId": container_id, "attribute": path, "index": index}
        with self._stream(url, query, None) as response:
            response.raw.decode_content = True
            content_type = response.headers.get("content-type", "")
            ext = content_type.split(";")[0].split("/")[-1].strip() if "/" in content_type else ""
            yield response.raw, ext

    @contextlib.contextmanager
    def open_file_set_zip(self, container_id: str, path: str) -> Iterator[IO[bytes]]:
        client = self._backend.leaderboard_client
        prepared = self.call(
            "leaderboard_client",
            "prepareForDownloadFileSetAttributeZip",
            experimentId=container_id,
            attribute=path,
        )
        download_url = self._get_download_url(client, prepared["id"])
        delay = 0.25
        deadline = time.monotonic() + self.zip_prepare_timeout
        while download_url is None:  # the server prepares the zip asynchronously
            if time.monotonic() >= deadline:
                raise NmigError(
                    f"the server had not prepared the zip of {path} after {self.zip_prepare_timeout:g} s; not exported"
                )
            time.sleep(min(delay, max(deadline - time.monotonic(), 0.0)))
            delay = min(delay * 2, 5.0)
            download_url = self._get_download_url(client, prepared["id"])
        with self._stream(download_url, None, "application/zip") as response:
            response.raw.decode_content = True
            yield response.raw

    def artifact(self, container_id: str, path: str) -> tuple[str, list[dict[str, Any]]]:
        headers = {"X-Neptune-Artifact-Api-Version": "2"}
        attribute = self.call(
            "leaderboard_client", "getArtifactAttribute", headers, experimentId=container_id, attribute=path
        )
        artifact_hash = attribute["hash"]
        listing = self.call(
            "artifacts_client",
            "listArtifactFiles",
            headers,
            projectIdentifier=self.project_uuid,
            hash=artifact_hash,
        )
        return artifact_hash, [_artifact_file(f) for f in listing.get("files") or []]


def _artifact_file(raw: dict[str, Any]) -> dict[str, Any]:
    """The API lists a file's metadata as [{"key", "value"}]; the bundle keeps it as a mapping, as the client's
    own ArtifactFileData does. Everything else is kept as given."""
    entry = dict(raw)
    metadata = entry.get("metadata")
    if isinstance(metadata, list):
        entry["metadata"] = {str(m.get("key")): m.get("value") for m in metadata if isinstance(m, dict)}
    return entry


# Proxy settings requests reads from os.environ on every request while `trust_env` is on.
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def _skip_redundant_environment_lookups(http_client: Any) -> None:
    """requests re-reads proxy settings from os.environ on every request (about a fifth of the client's time
    per small request). With no proxy variable set that lookup always finds nothing, so it is turned off.
    (.netrc is not consulted either way: the client authenticates every request itself.)

    The CA bundle of REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE is set on the session and the bravado client once,
    with or without a proxy: requests applies the variable only when a request's `verify` is True inside
    Session.request (requests/sessions.py:857), while bravado passes its own `ssl_verify` per request
    (bravado/requests_client.py:263, so with `trust_env` off it would be certifi's store) and the client's
    file downloads call Session.send (neptune/internal/backends/hosted_file_operations.py:521), which never
    reads the variable: a private CA would otherwise be trusted for some requests and not others."""
    session = http_client.session
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
        if http_client.ssl_verify is True:
            http_client.ssl_verify = bundle
    if not any(name.lower() in _PROXY_VARIABLES for name in os.environ):
        session.trust_env = False


CONNECT_ATTEMPTS = 3


def _open_project(neptune: Any, project: str, api_token: str) -> Any:
    """`init_project(mode="read-only")`, tried again on transient failures: the client does not retry the
    API-token exchange and the OAuth refresh it performs while opening (a 5xx there would end the export)."""
    from bravado.exception import HTTPServerError, HTTPTooManyRequests
    from neptune.common.exceptions import NeptuneConnectionLostException, NeptuneException

    transient = (HTTPServerError, HTTPTooManyRequests, NeptuneConnectionLostException, ConnectionError)
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            return neptune.init_project(project=project, api_token=api_token, mode="read-only")
        except transient as exc:
            if attempt == CONNECT_ATTEMPTS - 1:
                if isinstance(exc, NeptuneException):
                    raise _connect_error(exc, f"project {project}", api_token) from None
                raise NmigError(
                    f"cannot open project {project}: the server keeps failing ({describe_http(exc)})"
                ) from None
        except NeptuneException as exc:
            raise _connect_error(exc, f"project {project}", api_token) from None
        except (ValueError, OSError) as exc:  # malformed token / unreachable address
            raise NmigError(
                f"cannot connect to Neptune for project {project}: {redact(str(exc), api_token)}"
            ) from None
        time.sleep(1.0 * 2**attempt)
    raise AssertionError("unreachable")


def describe_http(exc: BaseException) -> str:
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else type(exc).__name__


def _server_message(exc: BaseException) -> str:
    """The server's own explanation behind a client exception (the client keeps only its own text)."""
    cause = exc.__cause__ or exc.__context__
    response = getattr(cause, "response", None)
    if response is not None:
        try:
            body = response.json()
            message = body.get("message") or body.get("title")
            if message:
                return redact(str(message))
        except Exception:  # not JSON: fall back to the text
            text = getattr(response, "text", "")
            if text:
                return redact(str(text)[:300])
    return _client_error_message(exc)


def _connect_error(exc: BaseException, what: str, api_token: str) -> NmigError:
    """One line for a client exception while opening `what` ("project ws/p", "workspace ws")."""
    from neptune.common.exceptions import (
        Forbidden,
        NeptuneConnectionLostException,
        NeptuneInvalidApiTokenException,
        Unauthorized,
    )
    from neptune.exceptions import ProjectNotFound

    if isinstance(exc, NeptuneInvalidApiTokenException | Unauthorized):
        return NmigError("the API token was rejected by the server (check NEPTUNE_API_TOKEN or --api-token)")
    if isinstance(exc, Forbidden):
        return NmigError(f"the API token has no access to {what}")
    if isinstance(exc, ProjectNotFound):
        return NmigError(f"{what} not found (or the token has no access to it)")
    if isinstance(exc, NeptuneConnectionLostException):
        return NmigError(f"cannot reach the Neptune server for {what}: connection lost after retries")
    return NmigError(f"cannot open {what}: {redact(_client_error_message(exc), api_token)}")


# Projects per listProjects request. ASSUMPTION: the 2.x server answers 100 projects per page (no spec gives a
# maximum; backend.json declares offset/limit, and the client itself asks for at most 5 in
# hosted_neptune_backend.py get_available_projects). Fewer per page are still read completely: offsets follow
# what came back.
PROJECT_PAGE = 100


def list_workspace_projects(workspace: str, api_token: str) -> list[str]:
    """The names of every project of `workspace` that the token sees, sorted, read with the 2.x operation
    `listProjects` (backend.json: GET /api/backend/v1/projects, ProjectListDTO) page by page on the client's own
    backend and session. The workspace is given by name, as the client does (hosted_neptune_backend.py
    get_available_projects passes organizationIdentifier=workspace). Entries of another workspace (a server
    matching the identifier loosely) and entries without a name are left out.

    ASSUMPTION: without sortBy the server keeps one order across the pages of a listing (nothing says which;
    a project created during the listing may be missed, and is found by re-running the export)."""
    prepare_client_env(api_token)
    backend = _open_backend(workspace, api_token)
    calls = BackendCalls(backend)
    names: set[str] = set()
    offset = 0
    while True:
        try:
            page = calls.call(
                "backend_client", "listProjects", organizationIdentifier=workspace, offset=offset, limit=PROJECT_PAGE
            )
        except NmigError:
            raise
        except Exception as exc:  # the server kept failing after the client's retries
            raise _connect_error(exc, f"workspace {workspace}", api_token) from None
        entries = page.get("entries") if isinstance(page, dict) else None
        if not isinstance(entries, list):
            raise NmigError(f"the server's project listing of workspace {workspace} is not a ProjectListDTO")
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                continue
            if entry.get("organizationName") not in (None, workspace):
                continue
            names.add(entry["name"])
        offset += len(entries)
        matching = page.get("matchingItemCount")
        if not entries or not isinstance(matching, int) or offset >= matching:
            return sorted(names)


def _open_backend(workspace: str, api_token: str) -> Any:
    """The client's own backend (token exchange, session, swagger clients) without opening a project."""
    from neptune.common.exceptions import NeptuneException
    from neptune.internal.backends.hosted_neptune_backend import HostedNeptuneBackend
    from neptune.internal.credentials import Credentials

    open_quickly()
    try:
        return HostedNeptuneBackend(Credentials.from_token(api_token))
    except NeptuneException as exc:
        raise _connect_error(exc, f"workspace {workspace}", api_token) from None
    except (ValueError, OSError) as exc:  # malformed token / unreachable address
        raise NmigError(f"cannot connect to Neptune for workspace {workspace}: {redact(str(exc), api_token)}") from None
