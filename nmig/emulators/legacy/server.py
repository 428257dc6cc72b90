"""The loopback Neptune 2.x server: the read API the unmodified `neptune` 1.x client uses, served from a fixture.

Assumptions about the real service (we cannot observe it) are written next to the code they shape.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import re
import secrets
import threading
import time
import uuid
import zipfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import numpy as np

from nmig.emulators.http import EmulatorInfo, FaultPlan, Request, Response, Router, serve_in_thread
from nmig.emulators.jwt import REALM_PATH, TOKEN_PATH
from nmig.emulators.legacy.fixture import (
    STANDARD_SYS_TYPES,
    Attribute,
    Container,
    FloatSeries,
    ImageSeries,
    LegacyFixture,
    LegacyProject,
    load_fixture,
)
from nmig.emulators.legacy.nql import NqlSyntaxError, compile_query
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
from nmig.loopback import LOOPBACK_CLIENT_ENV
from nmig.secrets import make_api_token

# ASSUMPTION: the real API caps one page of series values at 10,000 items (no evidence) and refuses
# offset + limit beyond 10,000 for leaderboard searches (the client's MAX_SERVER_OFFSET says the same).
MAX_PAGE_LIMIT = 10_000
# ASSUMPTION: a server declaring maxSingleValueLength (leaderboard.json, 2025) cuts longer string-series values
# to this many characters when the parameter is not given. No evidence of the number; the point is that a
# reader must ask for whole values.
DEFAULT_MAX_SINGLE_VALUE_LENGTH = 1000
# Ids handed out by the emulator (channels, download requests, organizations) are UUIDs (format uuid in
# both snapshots), derived from what they name so they are stable across restarts.
_ID_NAMESPACE = uuid.UUID("0b6c5f4e-26f0-4c1e-9f43-8a5f7a0f6d21")


def stable_id(*parts: str) -> str:
    return str(uuid.uuid5(_ID_NAMESPACE, "\x00".join(parts)))
MAX_LEADERBOARD_OFFSET = 10_000
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
_ZIP_TIME = (2023, 1, 1, 0, 0, 0)
_USER = "emulator-user"


def _iso(moment: datetime) -> str:
    """Datetimes as the 2.x API writes them: UTC, milliseconds, `Z`."""
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json(payload: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(payload, allow_nan=False, ensure_ascii=False).encode("utf-8"))


# Assumption: non-finite floats travel as the JSON strings "NaN", "Infinity" and "-Infinity" (JSON has no
# literal for them, and the client parses with simplejson, which refuses bare NaN tokens). Typed getters turn
# the strings back into floats (bravado's `double` format calls float()); raw leaderboard rows keep the strings.
_FLOAT_WORDS = {math.inf: "Infinity", -math.inf: "-Infinity"}


def _f(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else _FLOAT_WORDS[value]


_FLOAT_POINT = '{{"step":{!r},"timestampMillis":{},"value":{!r}}}'.format


class _FloatText:
    """Formats as its JSON text under %r: a finite float as itself, a non-finite one as its JSON string."""

    def __init__(self, value: float | str) -> None:
        self.text = json.dumps(value)

    def __repr__(self) -> str:
        return self.text


def _error(status: int, error_type: str, message: str) -> Response:
    return _json({"code": status, "errorType": error_type, "title": message, "message": message}, status)


def _not_found(what: str) -> Response:
    return _error(404, "NOT_FOUND", what)


def _bad_request(message: str) -> Response:
    return _error(400, "BAD_REQUEST", message)


def _series_stats(series: FloatSeries) -> dict[str, Any]:
    if series.stats is None:
        series.stats = _compute_series_stats(series)
    return series.stats


def _compute_series_stats(series: FloatSeries) -> dict[str, Any]:
    if len(series.values) == 0:
        return {}
    values = series.values
    finite = values[~(values != values)]  # NaN-free view; infinities stay, as they would in a running stat
    stats: dict[str, Any] = {"last": _f(float(values[-1])), "lastStep": float(series.steps[-1])}
    if len(finite):
        stats.update(
            min=_f(float(finite.min())), max=_f(float(finite.max())), average=_f(float(finite.mean()))
        )
    return stats


def attribute_properties(attr: Attribute) -> dict[str, Any]:
    """The `<type>Properties` object of an attribute, as in getExperimentAttributes and leaderboard entries.

    Assumption for the shapes the client does not read itself: gitRef carries the commit, `currentBranch`,
    `remotes` and `repositoryDirty` (the field names the client sends when creating a run); imageSeries carries
    `lastStep`; fileSet its total `size`; empty series omit `last`/`lastStep`.
    """
    props: dict[str, Any] = {"attributeName": attr.path, "attributeType": attr.type}
    value = attr.value
    kind = attr.type
    if kind == "float":
        props["value"] = _f(value)
    elif kind in ("int", "bool", "string", "experimentState"):
        props["value"] = value
    elif kind == "datetime":
        props["value"] = _iso(value)
    elif kind == "stringSet":
        props["values"] = list(value)
    elif kind == "floatSeries":
        props.update(_series_stats(value))
    elif kind == "stringSeries":
        if value.values:
            props.update(last=value.values[-1], lastStep=float(value.steps[-1]))
    elif kind == "imageSeries":
        # The values of an image series are those of its channel (ImageSeriesAttributeDTO.channelId, required
        # in both snapshots), read with getChannelValues.
        props["channelId"] = value.channel_id
        known = value.steps[~np.isnan(value.steps)]
        if len(known):
            props["lastStep"] = float(known[-1])
    elif kind == "file":
        props.update(name=_file_name(attr), ext=value["ext"], size=len(value["content"]))
    elif kind == "fileSet":
        props["size"] = sum(len(c) for c in value.values())
    elif kind == "artifact":
        props["hash"] = value["hash"]
    elif kind == "gitRef":
        props.update(
            commit=value["commit"],
            currentBranch=value["branch"],
            remotes=value["remotes"],
            repositoryDirty=value["dirty"],
        )
    elif kind == "notebookRef":
        props.update({k: v for k, v in value.items() if v is not None})
    return props


def _file_name(attr: Attribute) -> str:
    # Assumption: a File's name is the last path segment plus its extension, as the client names downloads.
    base = attr.path.rsplit("/", 1)[-1]
    return f"{base}.{attr.value['ext']}" if attr.value["ext"] else base


def _attribute_dto(attr: Attribute) -> dict[str, Any]:
    return {"name": attr.path, "type": attr.type, f"{attr.type}Properties": attribute_properties(attr)}


def _content_type(content: bytes) -> str:
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    return "application/octet-stream"


def _disposition(filename: str) -> str:
    # Header values are Latin-1 on the wire; the client reads `filename=` verbatim, so non-ASCII is %-encoded.
    return f'attachment; filename="{quote(filename, safe=" ._-()[]+,")}"'


def _member(params: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested object of a request body; anything else (missing, null, wrong type) reads as empty."""
    value = params.get(name)
    return value if isinstance(value, dict) else {}


def _sort_value(container: Container, name: str) -> Any:
    """The value leaderboard entries are ordered by; None (sorted last in either direction) when absent."""
    attr = container.attributes.get(name)
    if attr is None:
        return None
    value = attr.value
    if attr.type in ("int", "float"):
        return None if isinstance(value, float) and math.isnan(value) else float(value)
    if attr.type in ("string", "experimentState", "datetime", "bool"):
        return value
    if attr.type == "floatSeries" and len(value.values):
        return float(value.values[-1])
    return None


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
    ) -> None:
        """`series_paging` and `absent_operations` choose the API variant served (see spec.py);
        `zip_prepare_seconds`: how long a FileSet zip stays "not ready yet" after it was requested;
        `max_page_limit`: the largest series page accepted (a larger `limit` is refused with 400)."""
        self.fixture = fixture if isinstance(fixture, LegacyFixture) else load_fixture(fixture)
        self.token_ttl = token_ttl
        self.series_paging = series_paging
        self.specs = build_specs(series_paging, absent_operations)
        self.zip_prepare_seconds = zip_prepare_seconds
        self.max_page_limit = max_page_limit
        if token_ttl <= 0:
            raise ValueError("token_ttl must be positive")
        self.stats: Counter[str] = Counter()  # requests that reached a handler (faulted ones do not)
        self.faults: FaultPlan | None = None
        self.busy_seconds = 0.0  # time spent in handlers (auth check + building the answer)
        self._stats_lock = threading.Lock()
        self._base_url = ""
        self.api_token = ""
        self._tokens: TokenIssuer | None = None
        self._downloads: dict[str, tuple[str, str, float]] = {}  # id -> (container id, path, ready at)
        self._channels: dict[str, tuple[Container, Attribute]] = {}
        self._projects: dict[str, LegacyProject] = {}
        self._containers: dict[str, Container] = {}
        for project in self.fixture.projects:
            self._projects[project.id] = project
            self._projects[project.qualified_name] = project
            for container in [project.container, *project.runs, *project.models, *project.model_versions]:
                assert container is not None
                self._containers[container.id] = container
                self._containers[f"{project.qualified_name}/{container.sys_id}"] = container
                for attr in container.attributes.values():
                    if attr.type == "imageSeries":
                        attr.value.channel_id = stable_id("channel", container.id, attr.path)
                        self._channels[attr.value.channel_id] = (container, attr)
        self.router = self._build_router()

    # ---- serving -------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def serve(self, faults: FaultPlan, host: str = "127.0.0.1", port: int = 0) -> Iterator[EmulatorInfo]:
        self.faults = faults
        with serve_in_thread(self.router, faults, host, port) as url:
            self._base_url = url
            self._tokens = TokenIssuer(url + REALM_PATH, self.token_ttl)
            self.api_token = make_api_token(url, secrets.token_urlsafe(24))
            yield EmulatorInfo(url, self.api_token, self.fixture.workspace, dict(LOOPBACK_CLIENT_ENV))

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
                pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
                router.add(method, pattern, self._wrap(operation_id, handler, operation_id not in public))
        router.add("POST", TOKEN_PATH, self._wrap("refreshToken", self._op_refreshToken, False))
        router.add(
            "GET",
            ZIP_DOWNLOAD_PATH + r"/(?P<id>[0-9a-f-]+)",
            self._wrap("downloadZip", self._op_downloadZip, True),
        )
        return router

    def _wrap(self, name: str, handler: Any, protected: bool) -> Any:
        def run(request: Request, match: Any) -> Response:
            started = time.perf_counter()
            try:
                if protected:
                    refusal = self._check_bearer(request)
                    if refusal is not None:
                        return refusal
                return handler(request, match)
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
            return _error(401, "UNAUTHORIZED", "missing bearer token")
        try:
            self._tokens.verify(header[7:].strip(), "Bearer")
        except TokenError as exc:
            if exc.expired:
                self._count("expiredTokenRefused")
                # The client maps this errorType to NeptuneAuthTokenExpired and retries after refreshing.
                return _error(401, "AUTHORIZATION_TOKEN_EXPIRED", "access token expired")
            return _error(401, "UNAUTHORIZED", f"invalid access token ({exc})")
        return None

    # ---- auth and configuration ------------------------------------------------------------------------
    def _api_token_ok(self, request: Request) -> bool:
        return request.headers.get("x-neptune-api-token", "").strip() == self.api_token

    def _op_getClientConfig(self, request: Request, match: Any) -> Response:
        if not self._api_token_ok(request):
            return _error(401, "UNAUTHORIZED", "invalid API token")
        return _json(
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
            return _error(401, "UNAUTHORIZED", "invalid API token")
        assert self._tokens is not None
        pair = self._tokens.issue(_USER)
        return _json({"accessToken": pair["access"], "refreshToken": pair["refresh"], "username": _USER})

    def _op_refreshToken(self, request: Request, match: Any) -> Response:
        assert self._tokens is not None
        form = {k: v[0] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return _json({"error": "unsupported_grant_type"}, 400)
        try:
            claims = self._tokens.verify(form.get("refresh_token", ""), "Refresh")
        except TokenError as exc:
            return _json({"error": "invalid_grant", "error_description": str(exc)}, 400)
        pair = self._tokens.issue(str(claims.get("sub", _USER)))
        return _json(
            {
                "access_token": pair["access"],
                "refresh_token": pair["refresh"],
                "token_type": "Bearer",
                "expires_in": pair["expires_in"],
            }
        )

    # ---- projects --------------------------------------------------------------------------------------
    def _organization_id(self) -> str:
        return stable_id("organization", self.fixture.workspace)

    def _project_dto(self, project: LegacyProject) -> dict[str, Any]:
        """ProjectDTO (getProject): no visibility or description in backend.json's model."""
        return {
            "id": project.id,
            "name": project.name,
            "organizationName": project.workspace,
            "organizationId": self._organization_id(),
            "projectKey": project.key,
            "version": 2,
        }

    def _project_with_role_dto(self, project: LegacyProject) -> dict[str, Any]:
        """ProjectWithRoleDTO (getProjectDetails, listProjects entries): visibility is ProjectVisibilityDTO."""
        return {**self._project_dto(project), "visibility": project.visibility, "description": project.description}

    def _op_listProjects(self, request: Request, match: Any) -> Response:
        projects = self.fixture.projects
        workspace = request.arg("organizationIdentifier")
        if workspace and workspace != self.fixture.workspace:
            projects = []
        term = (request.arg("searchTerm") or "").lower()
        projects = [p for p in projects if term in p.name.lower()]
        try:
            offset, limit = int(request.arg("offset") or 0), int(request.arg("limit") or len(projects))
        except ValueError:
            return _bad_request("offset and limit must be integers")
        page = projects[max(offset, 0) : max(offset, 0) + max(limit, 0)]
        return _json(
            {
                "entries": [self._project_with_role_dto(p) for p in page],
                "matchingItemCount": len(projects),
                "totalItemCount": len(self.fixture.projects),
            }
        )

    def _op_getProject(self, request: Request, match: Any) -> Response:
        project = self._projects.get(request.arg("projectIdentifier") or "")
        if project is None:
            return _error(404, "PROJECT_NOT_FOUND", f"project {request.arg('projectIdentifier')} not found")
        return _json(self._project_dto(project))

    def _op_getProjectDetails(self, request: Request, match: Any) -> Response:
        project = self._projects.get(request.arg("projectIdentifier") or "")
        if project is None:
            return _error(404, "PROJECT_NOT_FOUND", f"project {request.arg('projectIdentifier')} not found")
        return _json(self._project_with_role_dto(project))

    def _op_listOrganizations(self, request: Request, match: Any) -> Response:
        return _json([{"id": self._organization_id(), "name": self.fixture.workspace}])

    # ---- objects and attributes ------------------------------------------------------------------------
    def _container(self, request: Request) -> Container | None:
        return self._containers.get(request.arg("experimentId") or "")

    def _experiment_dto(self, container: Container) -> dict[str, Any]:
        project = container.project
        return {
            "id": container.id,
            "type": container.kind,
            "shortId": container.sys_id,
            "organizationName": project.workspace,
            "organizationId": self._organization_id(),
            "projectName": project.name,
            "projectId": project.id,
            "trashed": container.trashed,
        }

    def _op_getExperiment(self, request: Request, match: Any) -> Response:
        container = self._container(request)
        if container is None or container.kind == "project":
            # The client turns this errorType into its "object not found" exception.
            return _error(404, "EXPERIMENT_NOT_FOUND", f"object {request.arg('experimentId')} not found")
        return _json(self._experiment_dto(container))

    def _op_getExperimentAttributes(self, request: Request, match: Any) -> Response:
        container = self._container(request)
        if container is None:
            return _error(404, "EXPERIMENT_NOT_FOUND", f"object {request.arg('experimentId')} not found")
        return _json({"attributes": [_attribute_dto(a) for a in container.attributes.values()]})

    def _attribute(self, request: Request, *kinds: str) -> tuple[Attribute | None, Response | None]:
        container = self._container(request)
        if container is None:
            return None, _error(
                404, "EXPERIMENT_NOT_FOUND", f"object {request.arg('experimentId')} not found"
            )
        path = request.arg("attribute") or ""
        attr = container.attributes.get(path)
        if attr is None or attr.type not in kinds:
            return None, _not_found(f"attribute {path!r} of type {'/'.join(kinds)} not found")
        return attr, None

    def _atom_handler(self, kind: str) -> Any:
        """The handler of `get<Kind>Attribute`: the attribute's properties, if it is of that type."""

        def answer(request: Request, match: Any) -> Response:
            attr, refusal = self._attribute(request, kind)
            return refusal if attr is None else _json(attribute_properties(attr))  # type: ignore[return-value]

        return answer

    # ---- series ----------------------------------------------------------------------------------------
    def _page(self, request: Request, total: int, steps: np.ndarray | None = None) -> tuple[int, int] | Response:
        """[start, stop) of the page asked for: by `offset`, or (float series of the skipToStep variant, whose
        spec has no offset) from the first point at or after `skipToStep`.

        ASSUMPTION: skipToStep is inclusive (the first point returned may have exactly that step) and the
        default limit is 100. No evidence for either; a reader that drops points at or before the last step
        it has works with an inclusive or an exclusive server alike.
        """
        try:
            limit = int(request.arg("limit") or 100)
            if steps is not None:
                skip = request.arg("skipToStep")
                offset = int(np.searchsorted(steps, float(skip), "left")) if skip else 0
            else:
                offset = int(request.arg("offset") or 0)
        except ValueError:
            return _bad_request("the paging parameters must be numbers")
        if offset < 0 or limit < 0 or limit > self.max_page_limit:
            return _bad_request(f"need offset >= 0 and 0 <= limit <= {self.max_page_limit}")
        return offset, min(total, offset + limit)

    def _series_page(self, request: Request, kind: str) -> tuple[Any, int, int] | Response:
        """The series of `kind` a values request names, and the [start, stop) of the page it asks for."""
        attr, refusal = self._attribute(request, kind)
        if attr is None:
            return refusal  # type: ignore[return-value]
        by_step = kind == "floatSeries" and self.series_paging == "skipToStep"
        # steps and values are as long (fixture.py checks)
        page = self._page(request, len(attr.value.steps), attr.value.steps if by_step else None)
        return page if isinstance(page, Response) else (attr.value, *page)

    def _op_getFloatSeriesValues(self, request: Request, match: Any) -> Response:
        found = self._series_page(request, "floatSeries")
        if isinstance(found, Response):
            return found
        series, start, stop = found  # a FloatSeries
        # The hot path of a big export: the page is formatted straight to JSON text, never through dicts.
        values, steps = series.values[start:stop], series.steps[start:stop]
        prefix = f'{{"totalItemCount":{len(series.values)},"values":['

        def plain(x: np.ndarray) -> bool:
            # What the fast formatting below reads back bit for bit (tested in tests/exporter): finite values
            # (the API sends the others as words) other than -0.0 (integral values are formatted through int64,
            # which has no negative zero).
            return bool(np.isfinite(x).all()) and not ((x == 0) & np.signbit(x)).any()

        # Below a few hundred points Arrow's fixed cost per call outweighs its speed per point (measured).
        if len(values) >= 256 and plain(values) and plain(steps):
            import pyarrow as pa
            import pyarrow.compute as pc

            def texts(x: np.ndarray) -> list[Any]:
                # Arrow's shortest round-trip formatting, in C++: about 4x faster than Python's repr per point.
                # Integral values get a ".0" (as with repr), so every JSON reader, Python's included, sees floats.
                # Returned as the parts that make up the text: an array, then maybe a literal suffix.
                integral = x == np.trunc(x)
                if not integral.any():
                    return [pc.cast(pa.array(x), pa.string())]
                if np.abs(x[integral]).max() < 2.0**53:  # exact in int64
                    whole = pc.cast(pa.array(np.where(integral, x, 0.0).astype(np.int64)), pa.string())
                    if integral.all():
                        return [whole, ".0"]
                    whole = pc.binary_join_element_wise(whole, ".0", "")
                    return [pc.if_else(pa.array(integral), whole, pc.cast(pa.array(x), pa.string()))]
                # Huge integral values: Arrow writes some as plain digits, some with an exponent.
                text = pc.cast(pa.array(x), pa.string())
                digits_only = pc.match_substring_regex(text, r"^-?[0-9]+$")
                return [pc.if_else(digits_only, pc.binary_join_element_wise(text, ".0", ""), text)]

            stamps = pc.cast(pa.array(series.timestamps[start:stop]), pa.string())
            # Every point followed by a comma, all in one contiguous buffer: the body is that buffer minus the
            # last comma (no second pass to join them).
            points = pc.binary_join_element_wise(
                '{"step":', *texts(steps), ',"timestampMillis":', stamps, ',"value":', *texts(values), "},", ""
            )
            offsets = np.frombuffer(points.buffers()[1], dtype=np.int32)
            first, end = offsets[points.offset], offsets[points.offset + len(points)]
            body = memoryview(points.buffers()[2])[first : end - 1].tobytes()
            return Response(200, prefix.encode() + body + b"]}")
        # Non-finite values go as the API's "NaN"/"Infinity" strings; -0.0 as repr's exact text (valid JSON).
        texts_ = values.tolist() if np.isfinite(values).all() else [_FloatText(_f(v)) for v in values.tolist()]
        steps_, stamps_ = steps.tolist(), series.timestamps[start:stop].tolist()
        body_ = ",".join(map(_FLOAT_POINT, steps_, stamps_, texts_))
        return Response(200, f"{prefix}{body_}]}}".encode())

    def _op_getStringSeriesValues(self, request: Request, match: Any) -> Response:
        found = self._series_page(request, "stringSeries")
        if isinstance(found, Response):
            return found
        series, start, stop = found  # a StringSeries
        values = series.values[start:stop]
        if self.series_paging == "skipToStep":  # this variant declares maxSingleValueLength
            try:
                longest = int(request.arg("maxSingleValueLength") or DEFAULT_MAX_SINGLE_VALUE_LENGTH)
            except ValueError:
                return _bad_request("maxSingleValueLength must be an integer")
            values = [v[:longest] for v in values]
        points = [
            {"step": s, "timestampMillis": t, "value": v}
            for s, t, v in zip(
                series.steps[start:stop].tolist(), series.timestamps[start:stop].tolist(), values, strict=True
            )
        ]
        return _json({"totalItemCount": len(series.values), "values": points})

    def _op_getImageSeriesValues(self, request: Request, match: Any) -> Response:
        # ImageSeriesValuesDTO is only the count in both snapshots (the client reads nothing else:
        # hosted_neptune_backend.py:966-967); the values are the channel's.
        found = self._series_page(request, "imageSeries")
        if isinstance(found, Response):
            return found
        return _json({"totalItemCount": len(found[0].steps)})

    def _op_getChannelValues(self, request: Request, match: Any) -> Response:
        """LimitedChannelValuesDTO: per point its timestamp, `x` (the step; absent when unknown) and `y`, for
        an image series `imageValue` with the name and description. Point i's content is getImageSeriesValue
        with index i. ASSUMPTION: channel values are in the order of the series' indexes; `imageUrl` and
        `thumbnailUrl` (in the model) are not sent. No evidence."""
        found = self._channels.get(match["channelId"])
        if found is None:
            return _not_found(f"no channel {match['channelId']}")
        series: ImageSeries = found[1].value
        page = self._page(request, len(series.steps))
        if isinstance(page, Response):
            return page
        points = []
        for i in range(*page):
            point: dict[str, Any] = {"timestampMillis": int(series.timestamps[i])}
            if not math.isnan(series.steps[i]):
                point["x"] = float(series.steps[i])
            point["y"] = {"imageValue": {"name": series.names[i], "description": series.descriptions[i]}}
            points.append(point)
        return _json({"channelId": series.channel_id, "totalItemCount": len(series.steps), "values": points})

    def _op_getImageSeriesValue(self, request: Request, match: Any) -> Response:
        attr, refusal = self._attribute(request, "imageSeries")
        if attr is None:
            return refusal  # type: ignore[return-value]
        series: ImageSeries = attr.value
        try:
            index = int(request.arg("index") or "")
        except ValueError:
            return _bad_request("index must be an integer")
        if not 0 <= index < len(series.contents):
            return _not_found(f"no value {index} in {attr.path!r}")
        content = series.contents[index]
        kind = _content_type(content)
        headers = {"Content-Disposition": _disposition(f"{index}.{kind.split('/')[-1]}")}
        return Response(200, content, content_type=kind, headers=headers)

    # ---- files -----------------------------------------------------------------------------------------
    def _op_downloadAttribute(self, request: Request, match: Any) -> Response:
        attr, refusal = self._attribute(request, "file")
        if attr is None:
            return refusal  # type: ignore[return-value]
        headers = {"Content-Disposition": _disposition(_file_name(attr))}
        return Response(200, attr.value["content"], content_type="application/octet-stream", headers=headers)

    def _op_lsFileSetAttribute(self, request: Request, match: Any) -> Response:
        attr, refusal = self._attribute(request, "fileSet")
        if attr is None:
            return refusal  # type: ignore[return-value]
        prefix = (request.arg("path") or "").strip("/")
        prefix = prefix + "/" if prefix else ""
        children: dict[str, dict[str, Any]] = {}
        mtime = _iso(datetime(*_ZIP_TIME, tzinfo=timezone.utc))
        for name, content in attr.value.items():
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            entry = children.setdefault(
                head, {"name": head, "size": 0, "mtime": mtime, "fileType": "directory" if sep else "file"}
            )
            entry["size"] += len(content)
        if prefix and not children:
            return _not_found(f"no directory {prefix!r} in {attr.path!r}")
        return _json(list(children.values()))

    def _op_prepareForDownloadFileSetAttributeZip(self, request: Request, match: Any) -> Response:
        attr, refusal = self._attribute(request, "fileSet")
        if attr is None:
            return refusal  # type: ignore[return-value]
        download_id = str(uuid.uuid4())
        with self._stats_lock:
            self._downloads[download_id] = (
                request.arg("experimentId") or "",
                attr.path,
                time.monotonic() + self.zip_prepare_seconds,
            )
        return self._download_request(download_id)

    def _download_request(self, download_id: str) -> Response:
        """DownloadPrepareRequest: `downloadUrl` only once the zip is ready (the client polls for it:
        hosted_file_operations._get_download_url returns it or None). ASSUMPTION: how long the real service
        takes is not known; `zip_prepare_seconds` simulates it. No evidence."""
        ready_at = self._downloads[download_id][2]
        if time.monotonic() < ready_at:
            return _json({"id": download_id})
        return _json({"id": download_id, "downloadUrl": f"{self._base_url}{ZIP_DOWNLOAD_PATH}/{download_id}"})

    def _op_getDownloadPrepareRequest(self, request: Request, match: Any) -> Response:
        download_id = request.arg("id") or ""
        if download_id not in self._downloads:
            return _not_found(f"no download request {download_id}")
        return self._download_request(download_id)

    def _op_downloadZip(self, request: Request, match: Any) -> Response:
        target = self._downloads.get(match["id"])
        container = self._containers.get(target[0]) if target else None
        attr = container.attributes.get(target[1]) if container and target else None
        if attr is None or target is None or time.monotonic() < target[2]:
            return _not_found("no such download")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in attr.value.items():
                # Entry names go into the zip exactly as stored, hostile ones included: guarding is the reader's job.
                archive.writestr(zipfile.ZipInfo(name, _ZIP_TIME), content)
        filename = attr.path.rsplit("/", 1)[-1] + ".zip"
        return Response(
            200,
            buffer.getvalue(),
            content_type="application/zip",
            headers={"Content-Disposition": _disposition(filename)},
        )

    # ---- artifacts -------------------------------------------------------------------------------------
    def _op_listArtifactFiles(self, request: Request, match: Any) -> Response:
        project = self._projects.get(request.arg("projectIdentifier") or "")
        wanted = request.arg("hash") or ""
        if project is None:
            return _error(404, "PROJECT_NOT_FOUND", "project not found")
        for container in [project.container, *project.runs, *project.models, *project.model_versions]:
            assert container is not None
            for attr in container.attributes.values():
                if attr.type == "artifact" and attr.value["hash"] == wanted:
                    files = [
                        {
                            **{k: v for k, v in entry.items() if k != "metadata"},
                            "metadata": [
                                {"key": k, "value": str(v)} for k, v in entry.get("metadata", {}).items()
                            ],
                        }
                        for entry in attr.value["files"]
                    ]
                    return _json({"files": files})
        return _not_found(f"artifact {wanted} not found")

    # ---- leaderboard -----------------------------------------------------------------------------------
    def _children(self, project: LegacyProject, types: list[str]) -> list[Container]:
        pools = {"run": project.runs, "model": project.models, "modelVersion": project.model_versions}
        selected = [t for t in types if t in pools] if types else list(pools)
        return [c for t in selected for c in pools[t]]

    def _op_searchLeaderboardAttributes(self, request: Request, match: Any) -> Response:
        project = self._projects.get(request.arg("projectIdentifier") or "")
        if project is None:
            return _error(404, "PROJECT_NOT_FOUND", "project not found")
        search = request.arg("search") or ""
        # Assumption: the service knows the standard sys/* columns of a project even before it has objects
        # (otherwise the client's default sort by sys/creation_time fails on an empty project).
        found: dict[tuple[str, str], None] = {
            (p, t): None for p, t in STANDARD_SYS_TYPES.items() if search in p
        }
        for container in self._children(project, request.query.get("type", [])):
            for attr in container.attributes.values():
                if search in attr.path:
                    found[(attr.path, attr.type)] = None
        return _json({"entries": [{"name": name, "type": kind} for name, kind in found]})

    def _op_searchLeaderboardEntries(self, request: Request, match: Any) -> Response:
        project = self._projects.get(request.arg("projectIdentifier") or "")
        if project is None:
            return _error(404, "PROJECT_NOT_FOUND", "project not found")
        try:
            params = request.json() or {}
        except ValueError:
            return _bad_request("the body must be JSON")
        if not isinstance(params, dict):
            return _bad_request("the body must be a JSON object")
        query_text = _member(params, "query").get("query") or ""
        if not isinstance(query_text, str):
            return _bad_request("query.query must be a string")
        try:
            predicate = compile_query(query_text)
        except NqlSyntaxError as exc:
            # The client turns the title "Syntax error" into NeptuneInvalidQueryException for the user.
            return _json(
                {"code": 400, "errorType": "BAD_REQUEST", "title": "Syntax error", "message": str(exc)}, 400
            )
        pagination = _member(params, "pagination")
        try:
            offset, limit = int(pagination.get("offset", 0)), int(pagination.get("limit", 100))
        except (TypeError, ValueError):
            return _bad_request("pagination offset and limit must be integers")
        if offset < 0 or limit < 0 or offset + limit > MAX_LEADERBOARD_OFFSET:
            return _bad_request(
                f"need offset >= 0, limit >= 0 and offset + limit <= {MAX_LEADERBOARD_OFFSET}"
            )
        matching = [c for c in self._children(project, request.query.get("type", [])) if predicate(c)]
        sorting = _member(params, "sorting")
        sort_by = _member(sorting, "sortBy").get("name")
        if sort_by:
            present = [(_sort_value(c, str(sort_by)), c) for c in matching]
            have = [pair for pair in present if pair[0] is not None]
            missing = [c for v, c in present if v is None]
            try:
                have.sort(key=lambda pair: pair[0], reverse=sorting.get("dir") == "descending")
            except TypeError:  # mixed types under one name: order by their text, as a string column would
                have.sort(key=lambda pair: str(pair[0]), reverse=sorting.get("dir") == "descending")
            matching = [c for _, c in have] + missing
        filters = params.get("attributeFilters")
        columns = (
            {f.get("path") for f in filters if isinstance(f, dict)} if isinstance(filters, list) else set()
        )
        entries = []
        for container in matching[offset : offset + limit]:
            attrs = container.attributes.values()
            entries.append(
                {
                    "experimentId": container.id,
                    "organizationName": container.project.workspace,
                    "projectName": container.project.name,
                    "type": container.kind,
                    "attributes": [_attribute_dto(a) for a in attrs if not columns or a.path in columns],
                }
            )
        return _json(
            {"matchingItemCount": len(matching), "totalGroupCount": len(matching), "entries": entries}
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
) -> Iterator[EmulatorInfo]:
    """Serve `fixture` as a Neptune 2.x service on a background thread; yields what a client needs."""
    emulator = LegacyEmulator(
        fixture,
        token_ttl=token_ttl,
        series_paging=series_paging,
        absent_operations=absent_operations,
        zip_prepare_seconds=zip_prepare_seconds,
        max_page_limit=max_page_limit,
    )
    faults = legacy_fault_plan(fail_rate, throttle_rate, latency_ms, seed, fault_unretried=fault_unretried)
    with emulator.serve(faults, host, port) as info:
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
