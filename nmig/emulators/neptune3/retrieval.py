"""neptune-query's read endpoints on the Neptune 3.x emulator (issue 3, item 5).

The server calls `register(app, router, store)`. Each handler decodes the JSON body the client sends, reads one
consistent snapshot of the store, and answers with the protobuf (or JSON) message the client parses:

==========================================================================  =======================  ====================================
endpoint                                                                    neptune-query uses it    answer
==========================================================================  =======================  ====================================
POST /api/leaderboard/v1/proto/leaderboard/entries/search/?projectIdentifier  list_runs, fetch_*       ProtoLeaderboardEntriesSearchResultDTO
POST /api/leaderboard/v1/leaderboard/attributes/definitions/query            list_attributes, fetch_* JSON QueryAttributeDefinitionsResultDTO
POST /api/leaderboard/v1/proto/leaderboard/attributes/query?projectIdentifier fetch_runs_table         ProtoQueryAttributesResultDTO
POST /api/leaderboard/v1/proto/attributes/series/float                       fetch_metrics            ProtoFloatSeriesValuesResponseDTO
POST /api/leaderboard/v1/proto/attributes/series                             fetch_series             ProtoSeriesValuesResponseDTO
POST /api/leaderboard/v1/proto/attributes/timeseries/buckets (protobuf body) fetch_metric_buckets     ProtoTimeseriesBucketsDTO
==========================================================================  =======================  ====================================

File downloads (`download_files`) go through the storage bridge's signed-URL endpoint, served by `files.py`.

Assumption about the real service: a project that does not exist, or lies in another workspace, is answered
403 with errorType ACCESS_DENIED (the service does not tell "missing" from "not yours"); neptune-query turns
that into its NeptuneProjectInaccessible error.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from typing import Any

from nmig.emulators.http import Request, Response, Router
from nmig.emulators.neptune3.retrieval_attributes import SERIES_TYPES
from nmig.emulators.neptune3.retrieval_buckets import buckets_response
from nmig.emulators.neptune3.retrieval_query import QueryError
from nmig.emulators.neptune3.retrieval_runs import (
    AttributeSelection,
    RunIdentifier,
    RunRow,
    attribute_definitions,
    attribute_values,
    find_run,
    leaderboard_response,
    project_runs,
    search_runs,
    trash_runs,
)
from nmig.emulators.neptune3.retrieval_series import (
    FloatSeriesRequest,
    SeriesRequest,
    float_series_response,
    lineage_segments,
    series_response,
)
from nmig.emulators.neptune3.store import Project, Store

PREFIX = "/api/leaderboard/v1"
SEARCH_PATH = PREFIX + "/proto/leaderboard/entries/search/"
DEFINITIONS_PATH = PREFIX + "/leaderboard/attributes/definitions/query"
VALUES_PATH = PREFIX + "/proto/leaderboard/attributes/query"
FLOAT_SERIES_PATH = PREFIX + "/proto/attributes/series/float"
SERIES_PATH = PREFIX + "/proto/attributes/series"
BUCKETS_PATH = PREFIX + "/proto/attributes/timeseries/buckets"
# retrieval.json trashExperiments (POST, body: a JSON list of experiment identifiers, ?projectIdentifier=;
# answers BulkOpResultDTO). No client of the project calls it; nmig import --sync-trash does, over
# neptune-scale's authenticated HTTP client.
TRASH_PATH = PREFIX + "/experiments/trash"

PROTOBUF = "application/x-protobuf"
DEFAULT_PAGE = 10_000


class BadRequest(ValueError):
    pass


class NoAccess(LookupError):
    pass


def _body(request: Request) -> dict[str, Any]:
    try:
        body = request.json()
    except ValueError as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


def _page_limit(value: Any) -> int:
    try:
        limit = int(value) if value is not None else DEFAULT_PAGE
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"not a page size: {value!r}") from exc
    # Never capped below what the client asked for: neptune-query stops paging attribute definitions at the
    # first page shorter than its batch size, so a smaller page would silently end the listing.
    return max(1, limit)


def _offset_token(value: Any) -> int:
    if value in (None, ""):
        return 0
    try:
        offset = int(value)
    except (TypeError, ValueError) as exc:
        raise BadRequest("malformed nextPageToken") from exc
    if offset < 0:
        raise BadRequest("malformed nextPageToken")
    return offset


# ASSUMPTION: like the real service, one float-series request carries at most a million points in all;
# neptune-query keeps to it (perSeriesPointsLimit = 1,000,000 // number of series). A request asking for more is
# refused rather than answered short, since a short page would tell the client the series has ended.
MAX_FLOAT_POINTS_PER_REQUEST = 1_000_000


def _float_points_limit(params: dict[str, Any]) -> int:
    series = len(params.get("requests") or [])
    raw = params.get("perSeriesPointsLimit")
    try:
        limit = int(raw) if raw is not None else max(1, MAX_FLOAT_POINTS_PER_REQUEST // max(1, series))
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"not a point limit: {raw!r}") from exc
    if limit < 0 or limit * series > MAX_FLOAT_POINTS_PER_REQUEST + series:
        raise BadRequest(f"at most {MAX_FLOAT_POINTS_PER_REQUEST:,} points per request")
    return limit


def _protobuf(message: Any) -> Response:
    return Response(200, message.SerializeToString(), content_type=PROTOBUF)


def _guarded(handler: Callable[[Request], Response]) -> Callable[[Request, re.Match[str]], Response]:
    """Map the read path's own errors to the status codes the real service uses."""

    def wrapped(request: Request, match: re.Match[str]) -> Response:
        try:
            return handler(request)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # BadRequest and QueryError among them
            detail = str(exc) if isinstance(exc, BadRequest | QueryError) else f"malformed request ({type(exc).__name__})"
            return Response.error(400, "Bad request", detail)
        except NoAccess as exc:
            return Response.json(
                {"code": 403, "errorType": "ACCESS_DENIED", "title": "Access denied", "message": str(exc)}, 403
            )

    return wrapped


def register(app: Any, router: Router, store: Store) -> None:
    """Add the read endpoints to `router`; `app` resolves project names (`project_from_qualified`)."""

    def project(qualified: str | None) -> Project:
        found = app.project_from_qualified(qualified)
        if found is None:
            raise NoAccess(f"project {qualified!r} does not exist or is not accessible")
        return found

    def projects_cache() -> Callable[[str], Project]:
        cache: dict[str, Project] = {}

        def get(qualified: str) -> Project:
            if qualified not in cache:
                cache[qualified] = project(qualified)
            return cache[qualified]

        return get

    def resolve_run(conn: sqlite3.Connection, get_project: Callable[[str], Project], identifier: str) -> RunRow | None:
        ident = RunIdentifier.parse(identifier)
        return find_run(conn, get_project(ident.project).project_pk, ident)

    def parent_resolver(conn: sqlite3.Connection, get_project: Callable[[str], Project]) -> Callable[[RunRow], RunRow | None]:
        def parent_of(run: RunRow) -> RunRow | None:
            if run.fork_parent_run_id is None:
                return None
            project_pk = run.project_pk
            if run.fork_parent_project:
                try:
                    project_pk = get_project(run.fork_parent_project).project_pk
                except NoAccess:
                    return None
            return find_run(conn, project_pk, RunIdentifier("", run_id=run.fork_parent_run_id))

        return parent_of

    def search(request: Request) -> Response:
        found = project(request.arg("projectIdentifier"))
        params = _body(request)
        paths = [str(item["path"]) for item in params.get("attributeFilters") or []]
        with store.read() as conn:
            matching, runs = search_runs(conn, found.project_pk, params)
            return _protobuf(leaderboard_response(conn, found.qualified_name, matching, runs, paths))

    def definitions(request: Request) -> Response:
        params = _body(request)
        qualified = params.get("projectIdentifiers") or ([request.arg("projectIdentifier")] if request.arg("projectIdentifier") else [])
        get_project = projects_cache()
        projects = [get_project(str(q)) for q in qualified]
        if not projects:
            raise BadRequest("no project given")
        selection = AttributeSelection.from_params(params, by_names=False, by_one_regex=True)
        page = params.get("nextPage") or {}
        limit, offset = _page_limit(page.get("limit")), _offset_token(page.get("nextPageToken"))
        with store.read() as conn:
            run_pks = None
            if params.get("experimentIdsFilter") is not None:
                run_pks = []
                for identifier in params["experimentIdsFilter"]:
                    run = resolve_run(conn, get_project, str(identifier))
                    if run is not None:
                        run_pks.append(run.run_pk)
            pairs = attribute_definitions(conn, [p.project_pk for p in projects], run_pks, selection)
        chunk = pairs[offset : offset + limit]
        next_page: dict[str, Any] = {}
        if offset + limit < len(pairs):
            next_page["nextPageToken"] = str(offset + limit)
        return Response.json({"entries": [{"name": n, "type": t} for n, t in chunk], "nextPage": next_page})

    def values(request: Request) -> Response:
        found = project(request.arg("projectIdentifier"))
        params = _body(request)
        selection = AttributeSelection.from_params(params, by_names=True, by_one_regex=False)
        page = params.get("nextPage") or {}
        limit, offset = _page_limit(page.get("limit")), _offset_token(page.get("nextPageToken"))
        get_project = projects_cache()
        with store.read() as conn:
            if params.get("experimentIdsFilter") is None:
                runs = project_runs(conn, found.project_pk)
            else:
                runs = []
                seen: set[int] = set()
                for identifier in params["experimentIdsFilter"]:
                    run = resolve_run(conn, get_project, str(identifier))
                    if run is not None and run.run_pk not in seen and run.project_pk == found.project_pk:
                        seen.add(run.run_pk)
                        runs.append(run)
            result, _ = attribute_values(conn, runs, selection, offset, limit)
            return _protobuf(result)

    def float_series(request: Request) -> Response:
        params = _body(request)
        get_project = projects_cache()
        limit = _float_points_limit(params)
        with store.read() as conn:
            parent_of = parent_resolver(conn, get_project)
            requests = []
            for item in params.get("requests") or []:
                series = item["series"]
                run = resolve_run(conn, get_project, str(series["holder"]["identifier"]))
                segments = None
                if run is not None:
                    segments = lineage_segments(
                        conn, run, str(series["attribute"]), frozenset({"float_series"}),
                        series.get("lineage") == "FULL", parent_of,
                    )
                after = item.get("afterStep")
                requests.append(
                    FloatSeriesRequest(
                        request_id=str(item["requestId"]),
                        segments=segments,
                        include_preview=bool(series.get("includePreview", False)),
                        after_step=float(after) if after is not None else None,
                    )
                )
            response = float_series_response(
                conn, requests, params.get("stepRange"), params.get("order") == "descending", limit
            )
        return _protobuf(response)

    def other_series(request: Request) -> Response:
        params = _body(request)
        get_project = projects_cache()
        limit = params.get("perSeriesPointsLimit")
        with store.read() as conn:
            parent_of = parent_resolver(conn, get_project)
            requests = []
            for item in params.get("requests") or []:
                series = item["series"]
                path = str(series["attribute"])
                run = resolve_run(conn, get_project, str(series["holder"]["identifier"]))
                segments, series_type = None, ""
                if run is not None:
                    row = conn.execute(
                        "SELECT type FROM attributes WHERE run_pk = ? AND path = ?", (run.run_pk, path)
                    ).fetchone()
                    if row is not None and row[0] in SERIES_TYPES and row[0] != "float_series":
                        series_type = row[0]
                        segments = lineage_segments(
                            conn, run, path, frozenset({series_type}), series.get("lineage") == "FULL", parent_of
                        ) or None
                search_after = item.get("searchAfter") or {}
                requests.append(
                    SeriesRequest(
                        request_id=str(item["requestId"]),
                        segments=segments,
                        series_type=series_type,
                        token=search_after.get("token") if isinstance(search_after, dict) else None,
                    )
                )
            response = series_response(
                conn, requests, params.get("stepRange"), params.get("order") == "descending",
                max(0, int(limit)) if limit is not None else None,
                deprecated_string_fields=request.arg("useDeprecatedStringFields", "false") == "true",
            )
        return _protobuf(response)

    def buckets(request: Request) -> Response:
        get_project = projects_cache()
        with store.read() as conn:
            parent_of = parent_resolver(conn, get_project)

            def segments_of(identifier: str, path: str, full_lineage: bool) -> Any:
                run = resolve_run(conn, get_project, identifier)
                if run is None:
                    return None
                return lineage_segments(conn, run, path, frozenset({"float_series"}), full_lineage, parent_of)

            return _protobuf(buckets_response(conn, request.body, segments_of))

    def trash(request: Request) -> Response:
        found = project(request.arg("projectIdentifier"))
        try:
            identifiers = request.json()
        except ValueError as exc:
            raise BadRequest("body is not JSON") from exc
        if not isinstance(identifiers, list) or not all(isinstance(i, str) for i in identifiers):
            raise BadRequest("body must be a JSON list of experiment identifiers")
        updated, errors = trash_runs(store, found, identifiers)
        return Response.json({"updatedExperimentIdentifiers": updated, "errors": errors})

    router.add("POST", re.escape(SEARCH_PATH.rstrip("/")) + "/?", _guarded(search))
    router.add("POST", re.escape(TRASH_PATH), _guarded(trash))
    router.add("POST", re.escape(BUCKETS_PATH), _guarded(buckets))
    router.add("POST", re.escape(DEFINITIONS_PATH), _guarded(definitions))
    router.add("POST", re.escape(VALUES_PATH), _guarded(values))
    router.add("POST", re.escape(FLOAT_SERIES_PATH), _guarded(float_series))
    router.add("POST", re.escape(SERIES_PATH), _guarded(other_series))

