"""Finding runs and their attributes: the leaderboard search, attribute definitions and attribute values.

Everything here works on one SQLite connection (a read snapshot) and plain request dictionaries, so the HTTP
layer in `retrieval.py` stays a thin decoder/encoder.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2 import (
    ProtoQueryAttributesResultDTO,
)
from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoLeaderboardEntriesSearchResultDTO,
)

from nmig.emulators.neptune3.retrieval_attributes import (
    AttributeRow,
    from_backend_type,
    load_attribute_rows,
    to_backend_type,
    to_proto,
    typed_value,
)
from nmig.emulators.neptune3.retrieval_query import (
    AttributeRef,
    QueryError,
    TypedValue,
    compile_regex,
    parse_query,
)
from nmig.emulators.neptune3.store import Project, Store

RUN_COLUMNS = (
    "r.run_pk, r.project_pk, r.run_id, r.sys_id, r.experiment_name, r.is_head, r.creation_ms, "
    "r.fork_parent_project, r.fork_parent_run_id, r.fork_step_whole, r.fork_step_micro"
)


@dataclass(frozen=True)
class RunRow:
    run_pk: int
    project_pk: int
    run_id: str
    sys_id: str
    experiment_name: str | None
    is_head: int
    creation_ms: int
    fork_parent_project: str | None
    fork_parent_run_id: str | None
    fork_step_whole: int | None
    fork_step_micro: int | None

    @property
    def experiment_id(self) -> str:
        """A stable opaque id for the run (the service's internal UUID, which nothing here relies on)."""
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"nmig-neptune3-run:{self.project_pk}:{self.run_pk}"))


@dataclass(frozen=True)
class RunIdentifier:
    """A run as the read API names it: `workspace/project/SYS-ID` or `CUSTOM/workspace/project/run-id`."""

    project: str  # workspace/project
    sys_id: str | None = None
    run_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> RunIdentifier:
        if text.startswith("CUSTOM/"):
            parts = text[len("CUSTOM/") :].split("/", 2)
            if len(parts) == 3 and all(parts):
                return cls(f"{parts[0]}/{parts[1]}", run_id=parts[2])
        else:
            parts = text.split("/", 2)
            if len(parts) == 3 and all(parts) and "/" not in parts[2]:
                return cls(f"{parts[0]}/{parts[1]}", sys_id=parts[2])
        raise QueryError(f"not a run identifier: {text!r}")


def project_runs(conn: sqlite3.Connection, project_pk: int) -> list[RunRow]:
    sql = f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.project_pk = ? ORDER BY r.run_pk"
    return [RunRow(*row) for row in conn.execute(sql, (project_pk,))]


def find_run(conn: sqlite3.Connection, project_pk: int, ident: RunIdentifier) -> RunRow | None:
    column, value = ("sys_id", ident.sys_id) if ident.sys_id is not None else ("run_id", ident.run_id)
    row = conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs r WHERE r.project_pk = ? AND r.{column} = ?", (project_pk, value)
    ).fetchone()
    return RunRow(*row) if row else None


def trashed_run_pks(conn: sqlite3.Connection, project_pk: int) -> set[int]:
    sql = (
        "SELECT a.run_pk FROM attributes a JOIN runs r ON r.run_pk = a.run_pk "
        "WHERE r.project_pk = ? AND a.path = 'sys/trashed' AND a.value = 1"
    )
    return {row[0] for row in conn.execute(sql, (project_pk,))}


def trash_runs(store: Store, project: Project, identifiers: list[str]) -> tuple[list[str], list[dict[str, str]]]:
    """trashExperiments: each identifier (`workspace/project/SYS-ID`, or `CUSTOM/workspace/project/run-id`)
    moved to the trash (sys/trashed true); (the identifiers updated, BulkOpErrorDTOs of the others). The reasons
    are the spec's (retrieval.json BulkOpErrorDTO.reason): NOT_EXISTS, ALREADY_TRASHED.
    ASSUMPTION: the service accepts the read API's run identifiers here ("Same format as sent in request" is
    all the spec says of them)."""
    updated: list[str] = []
    errors: list[dict[str, str]] = []
    with store.write() as conn:
        trashed = trashed_run_pks(conn, project.project_pk)
        for identifier in identifiers:
            try:
                ident = RunIdentifier.parse(identifier)
            except QueryError:
                ident = None
            run = find_run(conn, project.project_pk, ident) if ident is not None and ident.project == project.qualified_name else None
            if run is None:
                errors.append({"experimentIdentifier": identifier, "message": "no such run", "reason": "NOT_EXISTS"})
            elif run.run_pk in trashed:
                errors.append({"experimentIdentifier": identifier, "message": "already in the trash", "reason": "ALREADY_TRASHED"})
            else:
                conn.execute("UPDATE attributes SET value = 1 WHERE run_pk = ? AND path = 'sys/trashed'", (run.run_pk,))
                trashed.add(run.run_pk)
                updated.append(identifier)
    return updated, errors


# -- the leaderboard search (list_runs, fetch_runs_table, and the run lookup behind every fetch) ----------------


def _rows_by_run(rows: Iterable[AttributeRow]) -> dict[int, dict[str, AttributeRow]]:
    by_run: dict[int, dict[str, AttributeRow]] = {}
    for row in rows:
        by_run.setdefault(row.run_pk, {})[row.path] = row
    return by_run


def _sort_key(value: TypedValue) -> tuple[str, Any]:
    if isinstance(value.value, frozenset):
        return value.type, tuple(sorted(value.value))
    return value.type, value.value


def search_runs(conn: sqlite3.Connection, project_pk: int, params: dict[str, Any]) -> tuple[int, list[RunRow]]:
    """(number of matching runs, the requested page of them) for a SearchLeaderboardEntriesParamsDTO.

    Assumptions: runs without the sort attribute come last in either direction; ties keep creation order.
    `experimentLeader` selects the runs that head an experiment (the latest run created under each name).
    """
    # ASSUMPTION: runs in the project's trash (trashExperiments) are left out of leaderboard searches, as the
    # web app's runs table leaves them out; nothing in retrieval.json says so (its search has no trashed
    # parameter) and neptune-query sends no sys/trashed condition. Lookups by run id still find them.
    trashed = trashed_run_pks(conn, project_pk)
    runs = [run for run in project_runs(conn, project_pk) if run.run_pk not in trashed]
    if params.get("experimentLeader"):
        runs = [run for run in runs if run.experiment_name is not None and run.is_head]

    query = params.get("query") or {}
    node = parse_query(query.get("query", "") if isinstance(query, dict) else "")
    sorting = params.get("sorting") or {}
    sort_by = sorting.get("sortBy") or {}
    sort_ref = None
    if sort_by.get("name"):
        sort_ref = AttributeRef(str(sort_by["name"]), sort_by.get("type"), sorting.get("aggregationMode"))

    needed = [ref.name for ref in node.attributes()] if node is not None else []
    if sort_ref is not None:
        needed.append(sort_ref.name)
    rows = _rows_by_run(load_attribute_rows(conn, [run.run_pk for run in runs], needed)) if needed else {}

    def lookup_in(run_rows: dict[str, AttributeRow]) -> Any:
        def lookup(ref: AttributeRef) -> TypedValue | None:
            row = run_rows.get(ref.name)
            return typed_value(row, ref) if row is not None else None

        return lookup

    if node is not None:
        runs = [run for run in runs if node.evaluate(lookup_in(rows.get(run.run_pk, {})))]

    if sort_ref is not None:
        present: list[tuple[tuple[str, Any], RunRow]] = []
        missing: list[RunRow] = []
        for run in runs:
            found = lookup_in(rows.get(run.run_pk, {}))(sort_ref)
            if found is None or found.value is None:
                missing.append(run)
            else:
                present.append((_sort_key(found), run))
        try:
            present.sort(key=lambda item: item[0], reverse=sorting.get("dir") == "descending")
        except TypeError as exc:  # values of different types under one name, and no type given to tell them apart
            raise QueryError(f"cannot sort by {sort_ref.name}: its values have different types") from exc
        runs = [run for _, run in present] + missing

    pagination = params.get("pagination") or {}
    offset = max(0, int(pagination.get("offset") or 0))
    limit = pagination.get("limit")
    end = len(runs) if limit is None else offset + max(0, int(limit))
    return len(runs), runs[offset:end]


def leaderboard_response(
    conn: sqlite3.Connection, project_qualified: str, matching: int, runs: Sequence[RunRow], paths: Iterable[str]
) -> ProtoLeaderboardEntriesSearchResultDTO:
    """The page of runs with the projected attributes each of them has."""
    workspace, _, project_name = project_qualified.partition("/")
    result = ProtoLeaderboardEntriesSearchResultDTO(matching_item_count=matching)
    rows = _rows_by_run(load_attribute_rows(conn, [run.run_pk for run in runs], paths))
    for run in runs:
        entry = result.entries.add(
            experiment_id=run.experiment_id,
            type="run",
            project_name=project_name,
            organization_name=workspace,
        )
        for row in rows.get(run.run_pk, {}).values():
            to_proto(row, entry.attributes.add())
    return result


# -- attribute definitions and values (list_attributes, and what every fetch asks before fetching) -------------


@dataclass(frozen=True)
class AttributeSelection:
    """Which attributes a request selects: exact names, name regexes, and types (all optional)."""

    names: frozenset[str] | None = None
    alternatives: tuple[tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]], ...] = ()
    types: frozenset[str] | None = None  # neptune-query's (stored) names

    @classmethod
    def from_params(cls, params: dict[str, Any], *, by_names: bool, by_one_regex: bool) -> AttributeSelection:
        """`by_names`: the body may carry `attributeNamesFilter` (queryAttributesWithinProject: not in
        QueryAttributesBodyDTO at 05a7d83, but neptune_query/internal/retrieval/attribute_values.py:82 sends
        it); `by_one_regex`: it may carry `attributeNameRegex` (QueryAttributeDefinitionsBodyDTO has it)."""
        names = params.get("attributeNamesFilter") if by_names else None
        alternatives = []
        name_filter = params.get("attributeNameFilter") or {}
        for alternative in name_filter.get("mustMatchAny") or []:
            alternatives.append(
                (
                    tuple(compile_regex(p) for p in alternative.get("mustMatchRegexes") or []),
                    tuple(compile_regex(p) for p in alternative.get("mustNotMatchRegexes") or []),
                )
            )
        if by_one_regex and params.get("attributeNameRegex"):
            alternatives.append(((compile_regex(params["attributeNameRegex"]),), ()))
        types = None
        if params.get("attributeFilter"):
            types = frozenset(from_backend_type(str(item.get("attributeType"))) for item in params["attributeFilter"])
        return cls(
            names=frozenset(str(n) for n in names) if names is not None else None,
            alternatives=tuple(alternatives),
            types=types,
        )

    def accepts(self, name: str, stored_type: str) -> bool:
        if self.names is not None and name not in self.names:
            return False
        if self.types is not None and stored_type not in self.types:
            return False
        if self.alternatives and not any(
            all(p.search(name) for p in must) and not any(p.search(name) for p in must_not)
            for must, must_not in self.alternatives
        ):
            return False
        return True


def attribute_definitions(
    conn: sqlite3.Connection, project_pks: Sequence[int], run_pks: Sequence[int] | None, selection: AttributeSelection
) -> list[tuple[str, str]]:
    """Distinct (name, backend type) pairs of the selected attributes, sorted by name then type."""
    sql = "SELECT DISTINCT a.path, a.type FROM attributes a"
    args: list[Any] = []
    if run_pks is not None:
        sql += " WHERE a.run_pk IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(list(run_pks)))
    else:
        sql += " WHERE a.run_pk IN (SELECT run_pk FROM runs WHERE project_pk IN (SELECT value FROM json_each(?)))"
        args.append(json.dumps(list(project_pks)))
    if selection.names is not None:
        sql += " AND a.path IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(sorted(selection.names)))
    pairs = {(path, stored) for path, stored in conn.execute(sql, args) if selection.accepts(path, stored)}
    return sorted((path, to_backend_type(stored)) for path, stored in pairs)


def attribute_values(
    conn: sqlite3.Connection, runs: Sequence[RunRow], selection: AttributeSelection, offset: int, limit: int
) -> tuple[ProtoQueryAttributesResultDTO, int | None]:
    """A page of the selected attributes of `runs` (flattened run by run); the offset of the next page or None."""
    paths = selection.names if selection.names is not None else None
    rows = [r for r in load_attribute_rows(conn, [run.run_pk for run in runs], paths) if selection.accepts(r.path, r.type)]
    order = {run.run_pk: index for index, run in enumerate(runs)}
    rows.sort(key=lambda r: (order[r.run_pk], r.path))
    page = rows[offset : offset + limit]
    by_pk = {run.run_pk: run for run in runs}
    result = ProtoQueryAttributesResultDTO()
    current: Any = None
    current_pk: int | None = None
    for row in page:
        if current is None or current_pk != row.run_pk:
            run = by_pk[row.run_pk]
            current = result.entries.add(experimentId=run.experiment_id, experimentShortId=run.sys_id)
            current_pk = row.run_pk
        to_proto(row, current.attributes.add())
    next_offset = offset + limit if offset + limit < len(rows) else None
    if next_offset is not None:
        result.nextPage.nextPageToken = str(next_offset)
    return result, next_offset
