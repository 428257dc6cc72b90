"""The loopback Neptune 2.x server: the read API the unmodified `neptune` 1.x client uses, served from a fixture.

Shaped like moto's services: the state and its lookups are the backend (backend.py, raising typed errors that
carry their wire codes), the models' shapes and serialisers are the wire layer (wire.py, with the fast float
formatter), and the handlers here are thin: parse the request, ask the backend, serialise. The operations,
their paths and parameters are spec.py's (the real API's; held to Neptune's published specs by
tests/conformance). Assumptions about the real service are written next to the code they shape and listed in
docs/legacy-emulator.md.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from nmig.emulators.http import EmulatorInfo, FaultPlan, Request, Response, Router, serve_in_thread
from nmig.emulators.jwt import REALM_PATH, TOKEN_PATH
from nmig.emulators.legacy import wire
from nmig.emulators.legacy.backend import MAX_PAGE_LIMIT, BadRequest, LegacyApiError, LegacyBackend, NotFound
from nmig.emulators.legacy.fixture import STANDARD_SYS_TYPES, LegacyFixture, load_fixture
from nmig.emulators.legacy.spec import (
    ARTIFACTS_OPERATIONS,
    ATTRIBUTE_GETTERS,
    BACKEND_OPERATIONS,
    LEADERBOARD_OPERATIONS,
    ZIP_DOWNLOAD_PATH,
    SeriesPaging,
    build_specs,
)
from nmig.emulators.legacy.tokens import TokenError, TokenIssuer
from nmig.emulators.tls import ensure_certificates
from nmig.loopback import LOOPBACK_CLIENT_ENV
from nmig.secrets import make_api_token

# ASSUMPTION: a server declaring maxSingleValueLength (leaderboard.json, 2025) cuts longer string-series values
# to this many characters when the parameter is not given. No evidence of the number; the point is that a
# reader must ask for whole values.
DEFAULT_MAX_SINGLE_VALUE_LENGTH = 1000
# ASSUMPTION: the default `limit` of a series page. No evidence.
DEFAULT_PAGE_LIMIT = 100
# Requests the pinned client (neptune 1.14) sends outside its retry loop (`with_api_exceptions_handler`):
# - the API-token exchange and the OAuth refresh (oauthlib errors are not retried, and the exchange runs in
#   the authenticator's constructor);
# - getDownloadPrepareRequest (called bare in hosted_file_operations._get_download_url);
# - searchLeaderboardEntries (fetch_runs_table pages lazily in a generator, after the retrying wrapper has
#   returned).
# A fault there would abort the client, not exercise its retries, so by default these are never faulted.
# `fault_unretried=True` faults them too, for callers proving their own retries.
CLIENT_UNRETRIED_PATHS = (
    BACKEND_OPERATIONS["exchangeApiToken"][1],
    TOKEN_PATH,
    LEADERBOARD_OPERATIONS["getDownloadPrepareRequest"][1],
    LEADERBOARD_OPERATIONS["searchLeaderboardEntries"][1],
)
# The client version range the emulator answers for (reported in getClientConfig).
_CLIENT_VERSIONS = {
    "minRecommendedVersion": "1.0.0",
    "minCompatibleVersion": "1.0.0",
    "maxCompatibleVersion": "1.99.0",
}
_USER = "emulator-user"
Handler = Callable[[Request, Any], Response]


def _int(request: Request, name: str, default: int) -> int:
    try:
        return int(request.arg(name) or default)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


def _member(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested object of a request body; anything else (missing, null, wrong type) reads as empty."""
    value = params.get(name)
    return value if isinstance(value, dict) else {}


class LegacyEmulator:
    """A 2.x service over one fixture. `serve()` runs it; `stats` counts requests per operation for tests."""

    def __init__(
        self,
        fixture: str | Path | dict[str, Any] | LegacyFixture,
        *,
        token_ttl: float = 3600,
        series_paging: SeriesPaging = "offset",
        absent_operations: frozenset[str] = frozenset(),
        zip_prepare_seconds: float = 0.0,
        max_page_limit: int = MAX_PAGE_LIMIT,
        max_leaderboard_rows: int | None = None,
    ) -> None:
        """`series_paging` and `absent_operations` choose the API variant served (see spec.py);
        `zip_prepare_seconds`: how long a FileSet zip stays "not ready yet" after it was requested;
        `max_page_limit`: the largest series page accepted (a larger `limit` is refused with 400);
        `max_leaderboard_rows`: when set, the largest leaderboard search page accepted (a larger
        `pagination.limit` is refused with 400), for a server stricter than the client's default of 100."""
        self.fixture = fixture if isinstance(fixture, LegacyFixture) else load_fixture(fixture)
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self.token_ttl = token_ttl
        self.series_paging = series_paging
        self.specs = build_specs(series_paging, absent_operations)
        self.max_page_limit = max_page_limit
        self.max_leaderboard_rows = max_leaderboard_rows
        self.backend = LegacyBackend(self.fixture, zip_prepare_seconds=zip_prepare_seconds)
        self.stats: Counter[str] = Counter()  # requests that reached a handler (faulted ones do not)
        self.faults: FaultPlan | None = None
        self.busy_seconds = 0.0  # time spent in handlers (auth check + building the answer)
        self._stats_lock = threading.Lock()
        self._base_url = ""
        self.api_token = ""
        self._tokens: TokenIssuer | None = None
        self.router = self._build_router()

    # ---- serving -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(
        self, faults: FaultPlan, host: str = "127.0.0.1", port: int = 0, tls: bool = False
    ) -> Iterator[EmulatorInfo]:
        """Serve until the context ends; with `tls`, HTTPS with a certificate from a fresh private CA (its
        certificate in a temporary folder named by EmulatorInfo.ca_file, removed on exit)."""
        self.faults = faults
        with contextlib.ExitStack() as stack:
            certificates = None
            if tls:
                certificates = ensure_certificates(stack.enter_context(tempfile.TemporaryDirectory(prefix="nmig-legacy-tls-")))
            context = certificates.server_context() if certificates else None
            url = stack.enter_context(serve_in_thread(self.router, faults, host, port, context))
            self._base_url = url
            self._tokens = TokenIssuer(url + REALM_PATH, self.token_ttl)
            self.api_token = make_api_token(url, secrets.token_urlsafe(24))
            # Over HTTPS the client needs none of the plain-http relaxations (nmig/loopback.py).
            env = {} if tls else dict(LOOPBACK_CLIENT_ENV)
            ca_file = str(certificates.ca_file) if certificates else None
            yield EmulatorInfo(url, self.api_token, self.fixture.workspace, env, ca_file)

    def _count(self, name: str) -> None:
        with self._stats_lock:
            self.stats[name] += 1

    def _build_router(self) -> Router:
        router = Router()
        served: set[str] = set()
        for path, spec in self.specs.items():
            body = json.dumps(spec).encode("utf-8")
            router.add("GET", path, lambda request, match, body=body: Response(200, body))
            served |= {op["operationId"] for item in spec["paths"].values() for op in item.values()}
        public = {"getClientConfig", "exchangeApiToken"}
        for table in (BACKEND_OPERATIONS, LEADERBOARD_OPERATIONS, ARTIFACTS_OPERATIONS):
            for operation_id, (method, path) in table.items():
                if operation_id not in served:
                    continue  # this variant of the API lacks it: 404, as any unknown path
                kind = ATTRIBUTE_GETTERS.get(operation_id)
                handler = self._atom_handler(kind) if kind else getattr(self, f"_op_{operation_id}")
                # A Swagger path template ({name}) as a pattern with a named group per path parameter.
                pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(path))
                router.add(method, pattern, self._wrap(operation_id, handler, operation_id not in public))
        router.add("POST", TOKEN_PATH, self._wrap("refreshToken", self._op_refreshToken, False))
        router.add(
            "GET",
            ZIP_DOWNLOAD_PATH + r"/(?P<id>[0-9a-f-]+)",
            self._wrap("downloadZip", self._op_downloadZip, True),
        )
        return router

    def _wrap(self, name: str, handler: Handler, protected: bool) -> Handler:
        def run(request: Request, match: Any) -> Response:
            started = time.perf_counter()
            try:
                if protected:
                    refusal = self._check_bearer(request)
                    if refusal is not None:
                        return refusal
                return handler(request, match)
            except LegacyApiError as exc:
                return wire.error_response(exc.status, exc.error_type, exc.message, exc.title)
            finally:
                elapsed = time.perf_counter() - started
                with self._stats_lock:
                    self.stats[name] += 1
                    self.busy_seconds += elapsed

        return run

    def _check_bearer(self, request: Request) -> Response | None:
        assert self._tokens is not None
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return wire.error_response(401, "UNAUTHORIZED", "missing bearer token")
        try:
            self._tokens.verify(header[7:].strip(), "Bearer")
        except TokenError as exc:
            if exc.expired:
                self._count("expiredTokenRefused")
                # The client maps this errorType to NeptuneAuthTokenExpired and retries after refreshing.
                return wire.error_response(401, "AUTHORIZATION_TOKEN_EXPIRED", "access token expired")
            return wire.error_response(401, "UNAUTHORIZED", f"invalid access token ({exc})")
        return None

    # ---- auth and configuration ------------------------------------------------------------------------
    def _api_token_ok(self, request: Request) -> bool:
        return request.headers.get("x-neptune-api-token", "").strip() == self.api_token

    def _op_getClientConfig(self, request: Request, match: Any) -> Response:
        if not self._api_token_ok(request):
            return wire.error_response(401, "UNAUTHORIZED", "invalid API token")
        return wire.json_response(
            {
                "apiUrl": self._base_url,
                "applicationUrl": self._base_url,
                "pyLibVersions": _CLIENT_VERSIONS,
                "multiPartUpload": {"enabled": False},
                "artifacts": {"enabled": True, "apiVersion": 2},
                "sysNameSetByBackend": False,
            }
        )

    def _op_exchangeApiToken(self, request: Request, match: Any) -> Response:
        if not self._api_token_ok(request):
            return wire.error_response(401, "UNAUTHORIZED", "invalid API token")
        assert self._tokens is not None
        pair = self._tokens.issue(_USER)
        return wire.json_response({"accessToken": pair["access"], "refreshToken": pair["refresh"], "username": _USER})

    def _op_refreshToken(self, request: Request, match: Any) -> Response:
        assert self._tokens is not None
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return wire.json_response({"error": "unsupported_grant_type"}, 400)
        try:
            claims = self._tokens.verify(form.get("refresh_token", ""), "Refresh")
        except TokenError as exc:
            return wire.json_response({"error": "invalid_grant", "error_description": str(exc)}, 400)
        pair = self._tokens.issue(str(claims.get("sub", _USER)))
        return wire.json_response(
            {
                "access_token": pair["access"],
                "refresh_token": pair["refresh"],
                "token_type": "Bearer",
                "expires_in": pair["expires_in"],
            }
        )

    # ---- projects --------------------------------------------------------------------------------------
    def _op_listProjects(self, request: Request, match: Any) -> Response:
        projects = self.backend.projects(request.arg("organizationIdentifier"), request.arg("searchTerm") or "")
        offset, limit = max(_int(request, "offset", 0), 0), max(_int(request, "limit", len(projects)), 0)
        organization = self.backend.organization_id
        return wire.json_response(
            {
                "entries": [wire.project_with_role_dto(p, organization) for p in projects[offset : offset + limit]],
                "matchingItemCount": len(projects),
                "totalItemCount": len(self.fixture.projects),
            }
        )

    def _op_getProject(self, request: Request, match: Any) -> Response:
        project = self.backend.project(request.arg("projectIdentifier"))
        return wire.json_response(wire.project_dto(project, self.backend.organization_id))

    def _op_getProjectDetails(self, request: Request, match: Any) -> Response:
        project = self.backend.project(request.arg("projectIdentifier"))
        return wire.json_response(wire.project_with_role_dto(project, self.backend.organization_id))

    def _op_listOrganizations(self, request: Request, match: Any) -> Response:
        return wire.json_response([{"id": self.backend.organization_id, "name": self.fixture.workspace}])

    # ---- objects and attributes ------------------------------------------------------------------------
    def _op_getExperiment(self, request: Request, match: Any) -> Response:
        container = self.backend.container(request.arg("experimentId"), project_allowed=False)
        return wire.json_response(wire.experiment_dto(container, self.backend.organization_id))

    def _op_getExperimentAttributes(self, request: Request, match: Any) -> Response:
        container = self.backend.container(request.arg("experimentId"))
        return wire.json_response({"attributes": [wire.attribute_dto(a) for a in container.attributes.values()]})

    def _atom_handler(self, kind: str) -> Handler:
        """The handler of `get<Kind>Attribute`: the attribute's properties, if it is of that type."""

        def answer(request: Request, match: Any) -> Response:
            attr = self.backend.attribute(request.arg("experimentId"), request.arg("attribute"), kind)
            return wire.json_response(wire.attribute_properties(attr))

        return answer

    # ---- series ----------------------------------------------------------------------------------------
    def _window(self, request: Request, total: int, steps: Any = None) -> tuple[int, int]:
        """[start, stop) of the page a request asks for: by `offset`, or (float series of the skipToStep
        variant, whose spec has no offset) by `skipToStep`; a `limit` above max_page_limit is refused."""
        limit = _int(request, "limit", DEFAULT_PAGE_LIMIT)
        if limit > self.max_page_limit:
            raise BadRequest(f"limit must be at most {self.max_page_limit}")
        if steps is None:
            return self.backend.window(total, limit, _int(request, "offset", 0))
        skip = request.arg("skipToStep")
        try:
            skip_to_step = float(skip) if skip else None
        except ValueError:
            raise BadRequest("skipToStep must be a number") from None
        return self.backend.window(total, limit, steps=steps, skip_to_step=skip_to_step)

    def _series(self, request: Request, kind: str) -> Any:
        return self.backend.attribute(request.arg("experimentId"), request.arg("attribute"), kind).value

    def _op_getFloatSeriesValues(self, request: Request, match: Any) -> Response:
        series = self._series(request, "floatSeries")
        by_step = series.steps if self.series_paging == "skipToStep" else None
        return Response(200, wire.float_page_body(series, *self._window(request, len(series.steps), by_step)))

    def _op_getStringSeriesValues(self, request: Request, match: Any) -> Response:
        series = self._series(request, "stringSeries")
        start, stop = self._window(request, len(series.steps))
        longest = None
        if self.series_paging == "skipToStep":  # this variant declares maxSingleValueLength
            longest = _int(request, "maxSingleValueLength", DEFAULT_MAX_SINGLE_VALUE_LENGTH)
        return wire.json_response(wire.string_points(series, start, stop, longest))

    def _op_getImageSeriesValues(self, request: Request, match: Any) -> Response:
        # ImageSeriesValuesDTO is only the count in both snapshots (the client reads nothing else:
        # hosted_neptune_backend.py:966-967); the values are the channel's.
        series = self._series(request, "imageSeries")
        self._window(request, len(series.steps))  # the paging parameters are checked all the same
        return wire.json_response({"totalItemCount": len(series.steps)})

    def _op_getChannelValues(self, request: Request, match: Any) -> Response:
        series = self.backend.channel(match["channelId"])
        return wire.json_response(wire.channel_values(series, *self._window(request, len(series.steps))))

    def _op_getImageSeriesValue(self, request: Request, match: Any) -> Response:
        attr = self.backend.attribute(request.arg("experimentId"), request.arg("attribute"), "imageSeries")
        index = _int(request, "index", -1) if request.arg("index") else None
        if index is None:
            raise BadRequest("index must be an integer")
        if not 0 <= index < len(attr.value.contents):
            raise NotFound(f"no value {index} in {attr.path!r}")
        content = attr.value.contents[index]
        kind = wire.content_type(content)
        headers = {"Content-Disposition": wire.disposition(f"{index}.{kind.split('/')[-1]}")}
        return Response(200, content, content_type=kind, headers=headers)

    # ---- files -----------------------------------------------------------------------------------------
    def _op_downloadAttribute(self, request: Request, match: Any) -> Response:
        attr = self.backend.attribute(request.arg("experimentId"), request.arg("attribute"), "file")
        headers = {"Content-Disposition": wire.disposition(wire.file_name(attr))}
        return Response(200, attr.value["content"], content_type="application/octet-stream", headers=headers)

    def _op_lsFileSetAttribute(self, request: Request, match: Any) -> Response:
        attr = self.backend.attribute(request.arg("experimentId"), request.arg("attribute"), "fileSet")
        listing = wire.file_set_listing(attr, request.arg("path") or "")
        if listing is None:
            raise NotFound(f"no directory {request.arg('path')!r} in {attr.path!r}")
        return wire.json_response(listing)

    def _op_prepareForDownloadFileSetAttributeZip(self, request: Request, match: Any) -> Response:
        return self._download_request(self.backend.prepare_zip(request.arg("experimentId"), request.arg("attribute")))

    def _download_request(self, download_id: str) -> Response:
        """DownloadPrepareRequest: `downloadUrl` only once the zip is ready (the client polls for it:
        hosted_file_operations._get_download_url returns it or None)."""
        if not self.backend.zip_ready(download_id):
            return wire.json_response({"id": download_id})
        return wire.json_response({"id": download_id, "downloadUrl": f"{self._base_url}{ZIP_DOWNLOAD_PATH}/{download_id}"})

    def _op_getDownloadPrepareRequest(self, request: Request, match: Any) -> Response:
        return self._download_request(request.arg("id") or "")

    def _op_downloadZip(self, request: Request, match: Any) -> Response:
        return wire.file_set_zip(self.backend.zip_source(match["id"]))

    # ---- artifacts -------------------------------------------------------------------------------------
    def _op_listArtifactFiles(self, request: Request, match: Any) -> Response:
        project = self.backend.project(request.arg("projectIdentifier"))
        return wire.json_response(wire.artifact_files(self.backend.artifact_files(project, request.arg("hash") or "")))

    # ---- leaderboard -----------------------------------------------------------------------------------
    def _op_searchLeaderboardAttributes(self, request: Request, match: Any) -> Response:
        project = self.backend.project(request.arg("projectIdentifier"))
        search = request.arg("search") or ""
        # Assumption: the service knows the standard sys/* columns of a project even before it has objects
        # (otherwise the client's default sort by sys/creation_time fails on an empty project).
        found: dict[tuple[str, str], None] = {(p, t): None for p, t in STANDARD_SYS_TYPES.items() if search in p}
        for container in self.backend.children(project, request.query.get("type", [])):
            for attr in container.attributes.values():
                if search in attr.path:
                    found[(attr.path, attr.type)] = None
        return wire.json_response({"entries": [{"name": name, "type": kind} for name, kind in found]})

    def _op_searchLeaderboardEntries(self, request: Request, match: Any) -> Response:
        project = self.backend.project(request.arg("projectIdentifier"))
        try:
            params = request.json() or {}
        except ValueError:
            raise BadRequest("the body must be JSON") from None
        if not isinstance(params, dict):
            raise BadRequest("the body must be a JSON object")
        query_text = _member(params, "query").get("query") or ""
        if not isinstance(query_text, str):
            raise BadRequest("query.query must be a string")
        pagination = _member(params, "pagination")
        try:
            offset, limit = int(pagination.get("offset", 0)), int(pagination.get("limit", 100))
        except (TypeError, ValueError):
            raise BadRequest("pagination offset and limit must be integers") from None
        if self.max_leaderboard_rows is not None and limit > self.max_leaderboard_rows:
            raise BadRequest(f"pagination limit {limit} is over {self.max_leaderboard_rows}")
        sorting = _member(params, "sorting")
        sort_by = _member(sorting, "sortBy").get("name")
        page, matching = self.backend.search_entries(
            project,
            request.query.get("type", []),
            query_text,
            str(sort_by) if sort_by else None,
            sorting.get("dir") == "descending",
            offset,
            limit,
        )
        filters = params.get("attributeFilters")
        columns = {f.get("path") for f in filters if isinstance(f, dict)} if isinstance(filters, list) else set()
        return wire.json_response(
            {
                "matchingItemCount": matching,
                "totalGroupCount": matching,
                "entries": [wire.leaderboard_entry(c, columns) for c in page],
            }
        )


@contextlib.contextmanager
def serve_legacy(
    fixture: str | Path | dict[str, Any],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    fail_rate: float = 0.0,
    throttle_rate: float = 0.0,
    latency_ms: int = 0,
    seed: int = 0,
    token_ttl: float = 3600,
    fault_unretried: bool = False,
    series_paging: SeriesPaging = "offset",
    absent_operations: frozenset[str] = frozenset(),
    zip_prepare_seconds: float = 0.0,
    max_page_limit: int = MAX_PAGE_LIMIT,
    tls: bool = False,
    warm: bool = False,
) -> Iterator[EmulatorInfo]:
    """Serve `fixture` as a Neptune 2.x service on a background thread; yields what a client needs.

    `tls` serves HTTPS with a certificate from a private CA created for this run (EmulatorInfo.ca_file).
    `warm` loads first what the first answers would load (wire.warm_up): for a standalone emulator, not for
    one a test starts in its own process."""
    if warm:
        wire.warm_up()
    emulator = LegacyEmulator(
        fixture,
        token_ttl=token_ttl,
        series_paging=series_paging,
        absent_operations=absent_operations,
        zip_prepare_seconds=zip_prepare_seconds,
        max_page_limit=max_page_limit,
    )
    faults = legacy_fault_plan(fail_rate, throttle_rate, latency_ms, seed, fault_unretried=fault_unretried)
    with emulator.serve(faults, host, port, tls) as info:
        yield info


def legacy_fault_plan(
    fail_rate: float = 0.0,
    throttle_rate: float = 0.0,
    latency_ms: int = 0,
    seed: int = 0,
    *,
    fault_unretried: bool = False,
) -> FaultPlan:
    """The fault plan for the legacy emulator: calls the client does not retry are exempt (see above).

    Spec downloads are faulted like anything else: the client fetches them inside its retry loop.
    """
    return FaultPlan(
        fail_rate=fail_rate,
        throttle_rate=throttle_rate,
        latency_ms=latency_ms,
        seed=seed,
        exempt=() if fault_unretried else CLIENT_UNRETRIED_PATHS,
    )
