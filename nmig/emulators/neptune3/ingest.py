"""Ingest of neptune-scale's RunOperation protobufs, request statuses, and the service's validation rules.

A submit is answered once the request is accepted (kept on disk, IngestQueue), and it is applied afterwards,
in the order accepted, by one thread, as the real service ingests asynchronously; until then its status is
UNAVAILABLE. Each request is applied in one SQLite transaction together with its status row, so it is either
stored with its status or not applied at all. Items the service rejects (a non-increasing step, a type
conflict, a limit) are left out and reported through the request status, as the real service reports them;
the rest of the request is applied. The client learns the outcome by polling the bulk status check.

Assumptions about the real service where its behaviour is not documented are marked "ASSUMPTION" here and
collected in docs/neptune3-emulator.md.
"""

from __future__ import annotations

import itertools
import json
import math
import operator
import os
import queue
import re
import sqlite3
import threading
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf.message import DecodeError
from neptune_api.proto.google_rpc.code_pb2 import Code
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import SET_OPERATION, UpdateRunSnapshot, Value
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
from neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2 import (
    BulkCheckDetail,
    BulkIngestResultDetail,
    BulkRequestStatus,
    IngestResultDetail,
    RequestIdList,
    SubmitResponse,
)
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation
from neptune_api.proto.neptune_pb.ingest.v1.pub.request_status_pb2 import RequestStatus

from nmig.emulators.http import Request, Response
from nmig.emulators.neptune3.float_batch import decode_float_points, update_batch_bytes
from nmig.emulators.neptune3.store import Project, Store, now_ms

if TYPE_CHECKING:
    from nmig.emulators.neptune3.server import Neptune3App

INGEST_PATH = "/api/client/v1/ingest"
CHECK_PATH = "/api/client/v1/ingest/check"
CHECK_DETAILS_PATH = "/api/client/v1/ingest/checkDetails"
PROTOBUF = "application/x-protobuf"

# Limits documented by the IngestCode enum of the pinned protocol.
MAX_PATH_BYTES = 1024
MAX_STRING_BYTES = 1024 * 1024
MAX_STRING_SET_BYTES = 1024 * 1024
MAX_FILE_REF_BYTES = 4 * 1024
MAX_STEP_WHOLE = 1_000_000_000_000
# Accepted requests queued for ingest that are kept parsed in memory as well as on disk (IngestQueue.accept).
MAX_PARSED_QUEUED = 64
# Requests of at least this many snapshots are first tried whole by IngestEngine._bulk_floats.
BULK_MIN_POINTS = 64
# The two statements of a series' committed points: its rows (REPLACE: a committed point takes the place of a
# preview logged at the same step) and its attributes row after them (_series_row).
_INSERT_POINT = "INSERT OR REPLACE INTO points (attr_pk, step_whole, step_micro, ts_ms, value) VALUES (?, ?, ?, ?, ?)"
# Rows per statement of the bulk path's multi-row form of _INSERT_POINT: one statement step per row costs about
# twice the time of a row in a multi-row VALUES list (measured: 600,000 points, 0.77 s against 0.37 s).
_ROWS_PER_INSERT = 199  # 995 parameters: under SQLite's limit of 999 before 3.32
_UPDATE_SERIES_ROW = (
    "UPDATE attributes SET value = ?, last_step_whole = ?, last_step_micro = ?, last_ts_ms = ?,"
    " point_count = ?, agg_min = ?, agg_max = ?, agg_sum = ?, agg_sumsq = ? WHERE attr_pk = ?"
)
MAX_HISTOGRAM_EDGES = 513
MAX_EXPERIMENT_NAME_CHARS = 730  # ASSUMPTION: neptune-scale's own client-side limit; the service's is unknown
MAX_RUN_ID_CHARS = 730  # ASSUMPTION: as above
MIN_DATETIME_MS = -2208988800000  # 1900-01-01T00:00:00Z
MAX_DATETIME_MS = 10445875199999  # 2299-12-31T23:59:59.999Z
RUN_CACHE_SIZE = 64  # runs whose attribute state stays in memory between requests
INGEST_QUEUE_DIR = "ingest-queue"  # accepted requests not yet applied (IngestQueue)
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # ASSUMPTION: generous; neptune-scale keeps requests under 16 MiB

# sys/ attributes a client may write. ASSUMPTION: tags and group tags (the client's own tag API) and the
# description; every other sys/ attribute is maintained by the service and rejected as non-writable.
WRITABLE_SYS = frozenset({"sys/tags", "sys/group_tags", "sys/description"})

# The gRPC code reported next to each ingest code (ASSUMPTION: the service's mapping is not published).
_GRPC_FOR: dict[int, int] = {
    IngestCode.PROJECT_NOT_FOUND: Code.NOT_FOUND,
    IngestCode.RUN_NOT_FOUND: Code.NOT_FOUND,
    IngestCode.RUN_DUPLICATE: Code.ALREADY_EXISTS,
    IngestCode.RUN_CONFLICTING: Code.ALREADY_EXISTS,
    IngestCode.RUN_FORK_PARENT_NOT_FOUND: Code.NOT_FOUND,
    IngestCode.SERIES_POINT_DUPLICATE: Code.ALREADY_EXISTS,
    IngestCode.FIELD_PATH_NON_WRITABLE: Code.PERMISSION_DENIED,
    IngestCode.INTERNAL: Code.INTERNAL,
}

_SERIES_TYPE = {"float64": "float_series", "string": "string_series", "file_ref": "file_series",
                "histogram": "histogram_series"}


class ItemRejected(Exception):
    """One item of a request is rejected with an ingest code; the rest of the request goes on."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class RejectRequests:
    """Test hook (serve_neptune3(reject_requests=...)): every ingest request that carries a value for one of
    `paths` is rejected whole, nothing of it stored and each of its items reported with `code`, the way a
    service that validates a request as one unit would answer one bad value. It lets tests show that nmig
    loses only the bad value (docs/neptune3-emulator.md, "Test hooks")."""

    paths: frozenset[str]
    code: int = IngestCode.FIELD_PATH_INVALID

    def hits(self, snapshots: Any) -> list[str] | None:
        """Every item path of the request when one of them is to be rejected, else None."""
        items = [path for snapshot in snapshots for part in (snapshot.assign, snapshot.append, snapshot.modify_sets)
                 for path in part]
        return items if any(path in self.paths for path in items) else None


@dataclass
class AttrState:
    """What the ingest path needs to know about one attribute without reading the database."""

    attr_pk: int
    type: str
    last_whole: int | None = None
    last_micro: int | None = None
    last_ts: int | None = None
    count: int = 0
    agg_min: float | None = None
    agg_max: float | None = None
    agg_sum: float = 0.0
    agg_sumsq: float = 0.0
    last_value: Any = None


@dataclass
class RunState:
    run_pk: int
    project_pk: int
    run_id: str
    fork_whole: int | None
    fork_micro: int | None
    attrs: dict[str, AttrState] = field(default_factory=dict)


@dataclass
class Outcome:
    """Accumulates a request's result: counts by (grpc code, ingest code) and the rejected items."""

    ok: int = 0
    errors: list[tuple[str, int, str]] = field(default_factory=list)

    def reject(self, path: str, code: int, detail: str) -> None:
        self.errors.append((path, code, detail))

    def status(self) -> RequestStatus:
        counts: dict[tuple[int, int], int] = {}
        for _, code, _ in self.errors:
            key = (_GRPC_FOR.get(code, Code.INVALID_ARGUMENT), code)
            counts[key] = counts.get(key, 0) + 1
        status = RequestStatus()
        if self.ok or not counts:
            status.code_by_count.add(code=Code.OK, count=max(self.ok, 1), detail=IngestCode.OK)
        for (grpc, code), count in sorted(counts.items()):
            status.code_by_count.add(code=grpc, count=count, detail=code)
        return status


def _ts_ms(ts: Any) -> int:
    # Rounded to the nearest millisecond: neptune-scale derives nanos from a float timestamp, so 0.678 s
    # arrives as 677999999 ns. ASSUMPTION: the service keeps millisecond precision, as neptune-query returns.
    return ts.seconds * 1000 + (ts.nanos + 500_000) // 1_000_000


def _check_path(path: str) -> None:
    if not path:
        raise ItemRejected(IngestCode.FIELD_PATH_EMPTY, "attribute path is empty")
    if len(path) * 4 > MAX_PATH_BYTES and len(path.encode("utf-8")) > MAX_PATH_BYTES:
        raise ItemRejected(IngestCode.FIELD_PATH_EXCEEDS_SIZE_LIMIT, f"attribute path longer than {MAX_PATH_BYTES} bytes")


def _check_writable(path: str) -> None:
    if path.startswith("sys/") and path not in WRITABLE_SYS:
        raise ItemRejected(IngestCode.FIELD_PATH_NON_WRITABLE, f"{path} is maintained by the service")


def _check_string(text: str) -> str:
    if len(text) * 4 > MAX_STRING_BYTES and len(text.encode("utf-8")) > MAX_STRING_BYTES:
        raise ItemRejected(IngestCode.STRING_VALUE_EXCEEDS_SIZE_LIMIT, "string value longer than 1 MiB")
    return text


def _file_ref_json(value: Value) -> str:
    ref = value.file_ref
    if ref.ByteSize() > MAX_FILE_REF_BYTES:
        raise ItemRejected(IngestCode.FILE_REF_EXCEEDS_SIZE_LIMIT, "file reference longer than 4 KiB")
    return json.dumps({"path": ref.path, "size_bytes": ref.size_bytes, "mime_type": ref.mime_type})


def _histogram_json(value: Value) -> str:
    hist = value.histogram
    edges = list(hist.bin_edges)
    if any(math.isnan(e) for e in edges):
        raise ItemRejected(IngestCode.HISTOGRAM_BIN_EDGES_CONTAINS_NAN, "histogram bin edges contain NaN")
    if len(edges) > MAX_HISTOGRAM_EDGES:
        raise ItemRejected(IngestCode.HISTOGRAM_TOO_MANY_BINS, "more than 512 histogram bins")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ItemRejected(IngestCode.HISTOGRAM_BIN_EDGES_NOT_INCREASING, "histogram bin edges not increasing")
    kind = hist.WhichOneof("values")
    values: list[float] = list(hist.counts.values) if kind == "counts" else list(hist.densities.values)
    if len(values) != max(len(edges) - 1, 0):
        raise ItemRejected(IngestCode.HISTOGRAM_VALUES_LENGTH_DOESNT_MATCH_BINS, "histogram values do not match bins")
    return json.dumps({"type": "COUNTING" if kind == "counts" else "DENSITY", "edges": edges, "values": values})


def config_value(value: Value) -> tuple[str, Any]:
    """(neptune-query type, stored value) of an assigned value; string sets return their member list."""
    kind = value.WhichOneof("value")
    if kind == "float64":
        return "float", value.float64  # NaN and +-Inf are accepted (the service accepts them; NaN is stored NULL)
    if kind == "int64":
        return "int", value.int64
    if kind == "bool":
        return "bool", int(value.bool)
    if kind == "string":
        return "string", _check_string(value.string)
    if kind == "timestamp":
        ms = _ts_ms(value.timestamp)
        if not MIN_DATETIME_MS <= ms <= MAX_DATETIME_MS:
            raise ItemRejected(IngestCode.DATETIME_VALUE_OUT_OF_RANGE, "datetime outside 1900-01-01..2299-12-31")
        return "datetime", ms
    if kind == "string_set":
        members = list(value.string_set.values)
        if sum(len(m.encode("utf-8")) for m in members) > MAX_STRING_SET_BYTES:
            raise ItemRejected(IngestCode.STRING_SET_EXCEEDS_SIZE_LIMIT, "string set longer than 1 MiB")
        return "string_set", members
    if kind == "file_ref":
        return "file", _file_ref_json(value)
    raise ItemRejected(IngestCode.FIELD_TYPE_UNSUPPORTED, f"a {kind} value cannot be assigned")


class IngestEngine:
    """Applies RunOperations to a Store. Caches run and attribute state; the cache is dropped on any failure."""

    def __init__(self, store: Store, before_commit: Callable[[], None] | None = None) -> None:
        self.store = store
        # Test hook: called inside each request's transaction after all its rows are written, just before the
        # commit; whatever it raises rolls the whole request back (a crash or a lost disk at the last moment).
        self.before_commit = before_commit
        # The most recently written runs' state, least recent first: an import writes runs one after another,
        # so a bounded cache keeps memory flat however many runs a project gets.
        self._runs: OrderedDict[tuple[int, str], RunState] = OrderedDict()

    # -- request level -----------------------------------------------------------------------------------------

    def apply(
        self, project: Project | None, operation: RunOperation, request_id: str, reject: RejectRequests | None = None,
        received: bytes | None = None,
    ) -> RequestStatus:
        """Apply one operation and record its status under `request_id`, all in one transaction. `received`: the
        bytes it was parsed from, when at hand (the bulk path reads its points from them)."""
        outcome = Outcome()
        rejected = None
        if reject is not None and operation.WhichOneof("operation") in ("update", "update_batch"):
            rejected = reject.hits([operation.update] if operation.HasField("update") else operation.update_batch.snapshots)
        try:
            with self.store.write() as conn:
                if project is None:
                    outcome.reject("", IngestCode.PROJECT_NOT_FOUND, f"project {operation.project} not found")
                elif rejected is not None:
                    for path in rejected:
                        outcome.reject(path, reject.code, "request rejected whole (test hook)")  # type: ignore[union-attr]
                else:
                    self._apply(conn, project, operation, outcome, received)
                status = outcome.status()
                conn.execute(
                    "INSERT INTO requests (request_id, project_pk, received_ms, status) VALUES (?, ?, ?, ?)",
                    (request_id, project.project_pk if project else 0, now_ms(), status.SerializeToString()),
                )
                if outcome.errors:
                    conn.executemany(
                        "INSERT INTO request_errors (request_id, seq, path, ingest_code, detail) VALUES (?, ?, ?, ?, ?)",
                        [(request_id, i, p, c, d) for i, (p, c, d) in enumerate(outcome.errors)],
                    )
                if self.before_commit is not None:
                    self.before_commit()
        except BaseException:
            self._runs.clear()  # the transaction rolled back: cached state may be ahead of the database
            raise
        return status

    def _apply(
        self, conn: sqlite3.Connection, project: Project, op: RunOperation, outcome: Outcome, received: bytes | None = None
    ) -> None:
        run_id = op.run_id
        kind = op.WhichOneof("operation")
        if kind == "create":
            self._create_run(conn, project, run_id or op.create.run_id, op.create, outcome)
            return
        run = self._run(conn, project.project_pk, run_id)
        if run is None:
            outcome.reject("", IngestCode.RUN_NOT_FOUND, f"run {run_id!r} not found")
            return
        if kind == "update":
            snapshots: Any = [op.update]
        elif kind == "update_batch":
            snapshots = op.update_batch.snapshots
            if len(snapshots) >= BULK_MIN_POINTS and self._bulk_floats(conn, run, op, outcome, received):
                self._touch(conn, run)
                return
        else:
            return  # an empty operation: nothing to do, reported OK
        touched: dict[int, tuple[AttrState, list[Any]]] = {}
        points: list[tuple[Any, ...]] = []
        previews: list[tuple[Any, ...]] = []
        # Fast path for the bulk of an import, inlined: a snapshot holding only one committed float point at an
        # explicit step and time, for an existing float series, after its last point. It does exactly what
        # _apply_snapshot and _append do for such a snapshot (the same checks, in the same order of effect);
        # any other snapshot takes that general path. Per snapshot this saves the calls and map views that
        # made the emulator's single ingest thread the slowest part of a large import.
        attrs = run.attrs
        add_point = points.append
        no_fork = run.fork_whole is None
        fast_ok = 0
        for snapshot in snapshots:
            append = snapshot.append
            if (
                no_fork
                and len(append) == 1
                and not snapshot.assign
                and not snapshot.modify_sets
                and snapshot.HasField("step")
                and snapshot.HasField("timestamp")
                and not snapshot.HasField("preview")
            ):
                step = snapshot.step
                whole, micro = step.whole, step.micro
                path = next(iter(append))
                state = attrs.get(path)
                if state is not None and state.type == "float_series" and 0 <= micro < 1_000_000 and 0 <= whole < MAX_STEP_WHOLE:
                    value = append[path]
                    stored = value.float64
                    if stored != 0.0 or value.WhichOneof("value") == "float64":
                        ts = _ts_ms(snapshot.timestamp)
                        if _extends(state, whole, micro, ts):
                            add_point((state.attr_pk, whole, micro, ts, stored))
                            _advance(state, whole, micro, ts, stored, touched)
                            fast_ok += 1
                            continue
            self._apply_snapshot(conn, run, snapshot, outcome, points, previews, touched)
        outcome.ok += fast_ok
        if previews:
            conn.executemany(
                "INSERT OR REPLACE INTO points (attr_pk, step_whole, step_micro, ts_ms, value, preview, completion_ratio)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                previews,
            )
        if points:
            conn.executemany(_INSERT_POINT, points)
        if touched:
            conn.executemany(_UPDATE_SERIES_ROW, [_series_row(state, fresh) for state, fresh in touched.values()])
        self._touch(conn, run)

    def _bulk_floats(
        self, conn: sqlite3.Connection, run: RunState, op: RunOperation, outcome: Outcome, received: bytes | None
    ) -> bool:
        """The fast path below for a whole request at once (nmig.emulators.neptune3.float_batch): when every
        snapshot is a plain float point of one existing float series and each goes after the one before it
        and after the series' last point, the same rows, state and count; otherwise False, nothing done,
        and the request takes the per-message path (which also reports whatever is wrong with it)."""
        if run.fork_whole is not None:
            return False
        # The update batch's own bytes in what was received when they are there once (the case of every client
        # serialising with protobuf), else the message's canonical encoding: either way what the operation holds.
        snapshots = update_batch_bytes(received) if received is not None else None
        points = decode_float_points(snapshots if snapshots is not None else op.update_batch.SerializeToString())
        if points is None:
            return False
        whole, micro, stamps = points.whole, points.micro, points.ts_ms
        if (micro >= 1_000_000).any() or (whole >= MAX_STEP_WHOLE).any():
            return False
        state = run.attrs.get(points.path)
        if state is None:
            # A new series, created as the per-message path creates it at its first point (_append_one),
            # which it reaches here: every step is valid. Should a later check send the request that way
            # after all, it finds the series there, as it would have after that first point.
            try:
                _check_path(points.path)
                _check_writable(points.path)
            except ItemRejected:
                return False
            state = self._attr(conn, run, points.path, "float_series")
        if state.type != "float_series":
            return False
        key = whole * 1_000_000 + micro  # (whole, micro) in order: micro < 1e6, whole < 1e12
        if (key[1:] <= key[:-1]).any() or (stamps[1:] < stamps[:-1]).any():
            return False
        if state.last_whole is not None and int(key[0]) <= state.last_whole * 1_000_000 + (state.last_micro or 0):
            return False
        if state.last_ts is not None and int(stamps[0]) < state.last_ts:
            return False
        wholes, micros, times, values = whole.tolist(), micro.tolist(), stamps.tolist(), points.values.tolist()
        _insert_points(conn, state.attr_pk, wholes, micros, times, values)
        state.last_whole, state.last_micro, state.last_ts, state.last_value = wholes[-1], micros[-1], times[-1], values[-1]
        state.count += len(values)
        conn.execute(_UPDATE_SERIES_ROW, _series_row(state, values))
        outcome.ok += len(values)
        return True

    # -- runs --------------------------------------------------------------------------------------------------

    def _run(self, conn: sqlite3.Connection, project_pk: int, run_id: str) -> RunState | None:
        key = (project_pk, run_id)
        run = self._runs.get(key)
        if run is not None:
            self._runs.move_to_end(key)
            return run
        row = conn.execute(
            "SELECT run_pk, fork_step_whole, fork_step_micro FROM runs WHERE project_pk = ? AND run_id = ?",
            (project_pk, run_id),
        ).fetchone()
        if row is None:
            return None
        run = RunState(row[0], project_pk, run_id, row[1], row[2])
        for attr in conn.execute(
            "SELECT path, attr_pk, type, last_step_whole, last_step_micro, last_ts_ms, point_count, agg_min, agg_max,"
            " agg_sum, agg_sumsq, value FROM attributes WHERE run_pk = ?",
            (run.run_pk,),
        ):
            run.attrs[attr[0]] = AttrState(attr[1], attr[2], attr[3], attr[4], attr[5], attr[6], attr[7], attr[8],
                                           attr[9] or 0.0, attr[10] or 0.0, attr[11])
        self._runs[key] = run
        while len(self._runs) > RUN_CACHE_SIZE:
            self._runs.popitem(last=False)
        return run

    def _create_run(
        self, conn: sqlite3.Connection, project: Project, run_id: str, create: CreateRun, outcome: Outcome
    ) -> None:
        if not run_id or len(run_id) > MAX_RUN_ID_CHARS:
            outcome.reject("", IngestCode.RUN_INVALID_CREATION_PARAMETERS, "run id empty or too long")
            return
        experiment = create.experiment_id if create.HasField("experiment_id") else None
        if experiment is not None and (not experiment or len(experiment) > MAX_EXPERIMENT_NAME_CHARS):
            outcome.reject("", IngestCode.RUN_INVALID_CREATION_PARAMETERS, "experiment name empty or too long")
            return
        fork = create.fork_point if create.HasField("fork_point") else None
        fork_whole = fork.step.whole if fork is not None and fork.HasField("step") else None
        fork_micro = fork.step.micro if fork is not None and fork.HasField("step") else None
        family = create.family if create.HasField("family") else None
        existing = self._run(conn, project.project_pk, run_id)
        if existing is not None:
            # ASSUMPTION: creating an existing run resumes it silently when family and fork point match (the
            # protocol documents CreateRun as idempotent on those two, and neptune-scale sends a CreateRun on
            # every Run() since resuming is its default); a different family or fork point is reported as
            # RUN_CONFLICTING (a client warning) and the existing run is kept unchanged. A given experiment
            # name moves to the resumed run, as for a new run.
            row = conn.execute(
                "SELECT family, fork_parent_run_id, fork_step_whole, fork_step_micro, experiment_name, is_head"
                " FROM runs WHERE run_pk = ?",
                (existing.run_pk,),
            ).fetchone()
            same_fork = (row[1], row[2], row[3]) == (
                fork.parent_run_id if fork else None, fork_whole, fork_micro)
            if (family is not None and family != row[0]) or not same_fork:
                outcome.reject("", IngestCode.RUN_CONFLICTING, f"run {run_id!r} exists with other creation parameters")
                return
            if experiment is not None and not (row[4] == experiment and row[5]):
                self._take_experiment_name(conn, project.project_pk, existing.run_pk, experiment)
            outcome.ok += 1
            return

        created = _ts_ms(create.creation_time) if create.HasField("creation_time") else now_ms()
        owner = "unspecified"  # the protocol's documented default when no owner is given
        if create.HasField("owner"):
            which = create.owner.WhichOneof("owner_type")
            if which == "user_id":
                owner = create.owner.user_id
            elif which == "service_account_id":
                owner = f"{create.owner.service_account_id}@{project.workspace}"
        parent: tuple[Any, ...] | None = None
        parent_project = project
        if fork is not None:
            if fork.HasField("parent_project") and fork.parent_project != project.qualified_name:
                workspace, _, name = fork.parent_project.partition("/")
                parent_project = self.store.get_project(workspace, name) or project
            parent = conn.execute(
                "SELECT run_pk, family, fork_depth FROM runs WHERE project_pk = ? AND run_id = ?",
                (parent_project.project_pk, fork.parent_run_id),
            ).fetchone()
            if parent is None:
                # ASSUMPTION: the run is still created (the code is a warning), with its fork fields kept.
                outcome.reject("", IngestCode.RUN_FORK_PARENT_NOT_FOUND, f"fork parent {fork.parent_run_id!r} not found")
        if family is None:
            family = parent[1] if parent is not None else run_id
        depth = parent[2] + 1 if parent is not None else 0
        number = conn.execute(
            "UPDATE projects SET next_run_number = next_run_number + 1 WHERE project_pk = ? RETURNING next_run_number - 1",
            (project.project_pk,),
        ).fetchone()[0]
        sys_id = f"{project.key}-{number}"
        run_pk = conn.execute(
            "INSERT INTO runs (project_pk, run_id, sys_id, experiment_name, is_head, family, creation_ms,"
            " modification_ms, owner, fork_parent_project, fork_parent_run_id, fork_step_whole, fork_step_micro,"
            " fork_depth) VALUES (?, ?, ?, NULL, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING run_pk",
            (project.project_pk, run_id, sys_id, family, created, created, owner,
             parent_project.qualified_name if fork else None, fork.parent_run_id if fork else None,
             fork_whole, fork_micro, depth),
        ).fetchone()[0]
        sys_attrs: list[tuple[str, str, Any]] = [
            ("sys/id", "string", sys_id),
            ("sys/custom_run_id", "string", run_id),
            # ASSUMPTION: a run created without an experiment name has sys/name "" (neptune-query labels such
            # runs by sys/custom_run_id, and treats sys/name as the experiment name).
            ("sys/name", "string", ""),
            ("sys/creation_time", "datetime", created),
            ("sys/modification_time", "datetime", created),
            ("sys/ping_time", "datetime", created),
            ("sys/owner", "string", owner),
            ("sys/family", "string", family),
            ("sys/forking/depth", "int", depth),
            ("sys/description", "string", ""),
            ("sys/archived", "bool", 0),
            ("sys/trashed", "bool", 0),
            ("sys/failed", "bool", 0),
            ("sys/tags", "string_set", None),
            ("sys/group_tags", "string_set", None),
        ]
        if fork is not None:
            sys_attrs.append(("sys/forking/parent", "string", fork.parent_run_id))
            if fork_whole is not None:
                sys_attrs.append(("sys/forking/step", "float", fork_whole + (fork_micro or 0) / 1e6))
        conn.executemany(
            "INSERT INTO attributes (run_pk, path, type, value) VALUES (?, ?, ?, ?)",
            [(run_pk, path, kind, value) for path, kind, value in sys_attrs],
        )
        if parent is not None and create.inherit_configs:
            self._inherit_configs(conn, parent[0], run_pk)
        if experiment is not None:
            self._take_experiment_name(conn, project.project_pk, run_pk, experiment)
        self._runs.pop((project.project_pk, run_id), None)
        outcome.ok += 1

    def _take_experiment_name(self, conn: sqlite3.Connection, project_pk: int, run_pk: int, name: str) -> None:
        """Make `run_pk` the head of experiment `name`; the previous head keeps the name but is no longer head."""
        previous = [r[0] for r in conn.execute(
            "SELECT run_pk FROM runs WHERE project_pk = ? AND experiment_name = ? AND is_head = 1 AND run_pk != ?",
            (project_pk, name, run_pk),
        )]
        for other in previous:
            conn.execute("UPDATE runs SET is_head = 0 WHERE run_pk = ?", (other,))
            conn.execute("UPDATE attributes SET value = 0 WHERE run_pk = ? AND path = 'sys/experiment/is_head'", (other,))
        conn.execute("UPDATE runs SET experiment_name = ?, is_head = 1 WHERE run_pk = ?", (name, run_pk))
        conn.executemany(
            "INSERT INTO attributes (run_pk, path, type, value) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (run_pk, path) DO UPDATE SET value = excluded.value",
            [(run_pk, "sys/name", "string", name), (run_pk, "sys/experiment/name", "string", name),
             (run_pk, "sys/experiment/is_head", "bool", 1)],
        )
        # The attribute rows of these runs changed behind the cache: reload them on next use.
        stale = {run_pk, *previous}
        for key in [key for key, state in self._runs.items() if state.run_pk in stale]:
            del self._runs[key]

    def _inherit_configs(self, conn: sqlite3.Connection, parent_pk: int, child_pk: int) -> None:
        """Copy the parent's user-defined single-value attributes (`inherit_configs`)."""
        rows = conn.execute(
            "SELECT attr_pk, path, type, value FROM attributes WHERE run_pk = ? AND path NOT LIKE 'sys/%'"
            " AND type IN ('float', 'int', 'string', 'bool', 'datetime', 'string_set', 'file')",
            (parent_pk,),
        ).fetchall()
        for attr_pk, path, kind, value in rows:
            new_pk = conn.execute(
                "INSERT INTO attributes (run_pk, path, type, value) VALUES (?, ?, ?, ?) RETURNING attr_pk",
                (child_pk, path, kind, value),
            ).fetchone()[0]
            if kind == "string_set":
                conn.execute(
                    "INSERT INTO string_set_members (attr_pk, member) SELECT ?, member FROM string_set_members"
                    " WHERE attr_pk = ?",
                    (new_pk, attr_pk),
                )

    def _touch(self, conn: sqlite3.Connection, run: RunState) -> None:
        now = now_ms()
        conn.execute("UPDATE runs SET modification_ms = ? WHERE run_pk = ?", (now, run.run_pk))
        conn.execute(
            "UPDATE attributes SET value = ? WHERE run_pk = ? AND path IN ('sys/modification_time', 'sys/ping_time')",
            (now, run.run_pk),
        )

    # -- attributes --------------------------------------------------------------------------------------------

    def _attr(self, conn: sqlite3.Connection, run: RunState, path: str, kind: str) -> AttrState:
        state = run.attrs.get(path)
        if state is None:
            attr_pk = conn.execute(
                "INSERT INTO attributes (run_pk, path, type) VALUES (?, ?, ?) RETURNING attr_pk", (run.run_pk, path, kind)
            ).fetchone()[0]
            state = run.attrs[path] = AttrState(attr_pk, kind)
        elif state.type != kind:
            raise ItemRejected(IngestCode.FIELD_TYPE_CONFLICTING, f"{path} is a {state.type}, not a {kind}")
        return state

    def _apply_snapshot(
        self,
        conn: sqlite3.Connection,
        run: RunState,
        snapshot: UpdateRunSnapshot,
        outcome: Outcome,
        points: list[tuple[Any, ...]],
        previews: list[tuple[Any, ...]],
        touched: dict[int, tuple[AttrState, list[Any]]],
    ) -> None:
        ts = _ts_ms(snapshot.timestamp) if snapshot.HasField("timestamp") else now_ms()
        for path, value in snapshot.assign.items():
            try:
                _check_path(path)
                _check_writable(path)
                kind, stored = config_value(value)
                if path in WRITABLE_SYS and kind != ("string_set" if path != "sys/description" else "string"):
                    raise ItemRejected(IngestCode.FIELD_TYPE_CONFLICTING, f"{path} cannot hold a {kind}")
                state = self._attr(conn, run, path, kind)
                if kind == "string_set":
                    conn.execute("DELETE FROM string_set_members WHERE attr_pk = ?", (state.attr_pk,))
                    conn.executemany(
                        "INSERT OR IGNORE INTO string_set_members (attr_pk, member) VALUES (?, ?)",
                        [(state.attr_pk, m) for m in stored],
                    )
                else:
                    conn.execute("UPDATE attributes SET value = ? WHERE attr_pk = ?", (stored, state.attr_pk))
                outcome.ok += 1
            except ItemRejected as exc:
                outcome.reject(path, exc.code, exc.detail)
        for path, modify in snapshot.modify_sets.items():
            try:
                _check_path(path)
                _check_writable(path)
                state = self._attr(conn, run, path, "string_set")
                add = [(state.attr_pk, m) for m, o in modify.string.values.items() if o == SET_OPERATION.ADD]
                remove = [(state.attr_pk, m) for m, o in modify.string.values.items() if o == SET_OPERATION.REMOVE]
                conn.executemany("INSERT OR IGNORE INTO string_set_members (attr_pk, member) VALUES (?, ?)", add)
                conn.executemany("DELETE FROM string_set_members WHERE attr_pk = ? AND member = ?", remove)
                outcome.ok += 1
            except ItemRejected as exc:
                outcome.reject(path, exc.code, exc.detail)
        if snapshot.append:
            self._append(conn, run, snapshot, ts, outcome, points, previews, touched)

    def _append(
        self,
        conn: sqlite3.Connection,
        run: RunState,
        snapshot: UpdateRunSnapshot,
        ts: int,
        outcome: Outcome,
        points: list[tuple[Any, ...]],
        previews: list[tuple[Any, ...]],
        touched: dict[int, tuple[AttrState, list[Any]]],
    ) -> None:
        if snapshot.HasField("step"):
            whole, micro = snapshot.step.whole, snapshot.step.micro
        else:
            # ASSUMPTION: "next full step of the run" = one whole step after the greatest last step among the
            # run's series, 0 for a run without series.
            lasts = [s.last_whole for s in run.attrs.values() if s.last_whole is not None]
            whole, micro = (max(lasts) + 1 if lasts else 0), 0
        preview = snapshot.preview.is_preview if snapshot.HasField("preview") else False
        ratio = snapshot.preview.completion_ratio if preview else None
        step_error: tuple[int, str] | None = None
        if micro >= 1_000_000 or micro < 0 or whole < 0:
            step_error = (IngestCode.SERIES_STEP_INVALID, f"invalid step {whole}+{micro}e-6")
        elif whole >= MAX_STEP_WHOLE:
            step_error = (IngestCode.SERIES_STEP_TOO_LARGE, "step must be smaller than 1e12")
        elif run.fork_whole is not None and (whole, micro) <= (run.fork_whole, run.fork_micro or 0):
            step_error = (IngestCode.SERIES_STEP_NOT_AFTER_FORK_POINT, "step not after the fork point")
        attrs = run.attrs
        ok = 0
        add_point = points.append
        # Fast path for the bulk of an import: a float point for an existing float series, after its last step.
        fast = step_error is None and not preview
        for path, value in snapshot.append.items():
            if fast:
                stored = value.float64  # 0.0 when the value is another kind (a oneof), checked below
                state = attrs.get(path)
                if (
                    state is not None
                    and state.type == "float_series"
                    and (stored != 0.0 or value.WhichOneof("value") == "float64")
                ):
                    if _extends(state, whole, micro, ts):
                        add_point((state.attr_pk, whole, micro, ts, stored))
                        _advance(state, whole, micro, ts, stored, touched)
                        ok += 1
                        continue
            if step_error is not None:
                outcome.reject(path, *step_error)
                continue
            if self._append_one(conn, run, path, value, whole, micro, ts, preview, ratio, outcome, points, previews, touched):
                ok += 1
        outcome.ok += ok

    def _append_one(
        self,
        conn: sqlite3.Connection,
        run: RunState,
        path: str,
        value: Value,
        whole: int,
        micro: int,
        ts: int,
        preview: bool,
        ratio: float | None,
        outcome: Outcome,
        points: list[tuple[Any, ...]],
        previews: list[tuple[Any, ...]],
        touched: dict[int, tuple[AttrState, list[Any]]],
    ) -> bool:
        """Validate and queue one point of any kind; False (and the rejection recorded) when it is refused."""
        state = run.attrs.get(path)
        kind = value.WhichOneof("value")
        try:
            if kind == "float64":
                stored: Any = value.float64
                series_type = "float_series"
            elif kind in _SERIES_TYPE:
                series_type = _SERIES_TYPE[kind]
                if kind == "string":
                    stored = _check_string(value.string)
                elif kind == "file_ref":
                    stored = _file_ref_json(value)
                else:
                    stored = _histogram_json(value)
            else:
                raise ItemRejected(IngestCode.FIELD_TYPE_UNSUPPORTED, f"a {kind} value cannot be appended")
            if state is None:
                _check_path(path)
                _check_writable(path)
                state = self._attr(conn, run, path, series_type)
            elif state.type != series_type:
                raise ItemRejected(IngestCode.FIELD_TYPE_CONFLICTING, f"{path} is a {state.type}, not a {series_type}")
            last_whole, last_micro = state.last_whole, state.last_micro
            if last_whole is not None and last_micro is not None:
                if (whole, micro) <= (last_whole, last_micro):
                    if (whole, micro) == (last_whole, last_micro) and _same(state.last_value, stored):
                        raise ItemRejected(IngestCode.SERIES_POINT_DUPLICATE, f"{path}: point already logged")
                    if preview:
                        raise ItemRejected(IngestCode.SERIES_PREVIEW_STEP_NOT_AFTER_LAST_COMMITTED_STEP,
                                           f"{path}: preview step not after the last committed step")
                    raise ItemRejected(IngestCode.SERIES_STEP_NON_INCREASING,
                                       f"{path}: step {whole + micro / 1e6} not after {last_whole + last_micro / 1e6}")
                if state.last_ts is not None and ts < state.last_ts:
                    raise ItemRejected(IngestCode.SERIES_TIMESTAMP_DECREASING, f"{path}: timestamp decreasing")
        except ItemRejected as exc:
            outcome.reject(path, exc.code, exc.detail)
            return False
        if preview:
            # ASSUMPTION: previews neither advance the series nor count in its aggregates; a later committed
            # point at the same step replaces the preview.
            previews.append((state.attr_pk, whole, micro, ts, stored, 1, ratio))
            return True
        points.append((state.attr_pk, whole, micro, ts, stored))
        _advance(state, whole, micro, ts, stored, touched)
        return True


def _extends(state: AttrState, whole: int, micro: int, ts: int) -> bool:
    """A point at this step and time goes after the series' last one (a later step, a time not earlier)."""
    last_whole = state.last_whole
    return (
        last_whole is None
        or whole > last_whole
        or (whole == last_whole and micro > state.last_micro)  # type: ignore[operator]
    ) and (state.last_ts is None or ts >= state.last_ts)


def _advance(
    state: AttrState, whole: int, micro: int, ts: int, stored: Any, touched: dict[int, tuple[AttrState, list[Any]]]
) -> None:
    """A committed point at the end of its series: its new last point, and the values its aggregates take in."""
    state.last_whole, state.last_micro, state.last_ts, state.last_value = whole, micro, ts, stored
    state.count += 1
    fresh = touched.get(state.attr_pk)
    if fresh is None:
        touched[state.attr_pk] = (state, [stored])
    else:
        fresh[1].append(stored)


def _insert_points(
    conn: sqlite3.Connection, attr_pk: int, wholes: list[int], micros: list[int], times: list[int], values: list[float]
) -> None:
    """The rows _INSERT_POINT would write one by one, in the same order, _ROWS_PER_INSERT to a statement."""
    flat = [field for row in zip(itertools.repeat(attr_pk), wholes, micros, times, values) for field in row]
    width = 5 * _ROWS_PER_INSERT
    whole_statements = len(values) // _ROWS_PER_INSERT
    if whole_statements:
        statement = _INSERT_POINT + ", (?, ?, ?, ?, ?)" * (_ROWS_PER_INSERT - 1)
        conn.executemany(statement, (flat[k * width:(k + 1) * width] for k in range(whole_statements)))
    rest = len(values) - whole_statements * _ROWS_PER_INSERT
    if rest:
        conn.execute(_INSERT_POINT + ", (?, ?, ?, ?, ?)" * (rest - 1), flat[whole_statements * width:])


def _series_row(state: AttrState, fresh: list[Any]) -> tuple[Any, ...]:
    """The attributes-row update of a series after this request's points `fresh` (aggregates in C builtins)."""
    if state.type == "float_series":
        total = sum(fresh)
        if total != total:  # NaN points stay out of the aggregates
            fresh = [v for v in fresh if v == v]
            total = sum(fresh)
        if fresh:
            low, high = min(fresh), max(fresh)
            state.agg_min = low if state.agg_min is None else min(state.agg_min, low)
            state.agg_max = high if state.agg_max is None else max(state.agg_max, high)
            state.agg_sum += total
            state.agg_sumsq += sum(map(operator.mul, fresh, fresh))
        aggregates: tuple[Any, ...] = (state.agg_min, state.agg_max, state.agg_sum, state.agg_sumsq)
    else:
        aggregates = (None, None, None, None)
    return (state.last_value, state.last_whole, state.last_micro, state.last_ts, state.count, *aggregates, state.attr_pk)


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


# -- HTTP ----------------------------------------------------------------------------------------------------------

class IngestQueue:
    """Accepted ingest requests waiting to be applied, in the order they were accepted; one thread applies them.

    The real service ingests asynchronously: a submit is answered with its request id once the request is
    accepted, and what became of it is reported later by the status check, with code UNAVAILABLE while it is
    not processed yet. Evidence: SubmitResponse carries only request ids (proto neptune_pb/ingest/v1/pub/
    client.proto); neptune-scale's StatusTrackingThread treats an UNAVAILABLE status as "not ready yet, sleep
    and retry" (neptune_scale/sync/sync_process.py:475-478) and its SenderThread sends a run's requests back
    to back without waiting for any status. So the emulator answers a submit before applying it too (which
    also lets a client's next request travel while the last one is ingested, as it does against the service).

    An accepted request is kept on disk before it is answered (`<data dir>/ingest-queue/<seq>-<id>.bin`,
    written whole then renamed), so a killed emulator applies it after a restart, as the service never
    forgets an acknowledged request. ASSUMPTION: the service applies one project's requests in the order it
    accepted them (the client's sender relies on it: a run's updates follow its creation without a wait);
    here every request is applied in that order, by one thread. A request applied and then found on disk
    again (killed between the commit and the removal) is recognised by its id and not applied twice."""

    def __init__(self, engine: IngestEngine, app: Neptune3App) -> None:
        self._engine = engine
        self._app = app
        self._dir = app.store.data_dir / INGEST_QUEUE_DIR
        self._dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        # (request id, its file, the request as parsed when accepted or None: read again from the file)
        self._queue: queue.SimpleQueue[tuple[str, Path, tuple[RunOperation, bytes] | None] | None] = queue.SimpleQueue()
        self._waiting: set[str] = set()
        found = sorted(self._dir.glob("*.bin"))
        for path in found:
            request_id = path.stem.partition("-")[2]
            self._waiting.add(request_id)
            self._queue.put((request_id, path, None))
        for leftover in self._dir.glob("*.tmp"):  # never answered: the client got no id for it
            leftover.unlink(missing_ok=True)
        self._seq = int(found[-1].stem.partition("-")[0]) + 1 if found else 0
        self._thread = threading.Thread(target=self._apply_all, name="neptune3-ingest", daemon=True)
        self._thread.start()

    def accept(self, body: bytes, operation: RunOperation) -> str:
        """Keep the request (`body`, parsed as `operation`) and queue it; its request id."""
        request_id = str(uuid.uuid4())
        with self._lock:  # sequence numbers, files and queue order agree
            path = self._dir / f"{self._seq:012d}-{request_id}.bin"
            self._seq += 1
            partial = path.with_suffix(".tmp")
            partial.write_bytes(body)
            os.replace(partial, path)
            # The parsed request rides along while the queue is short (not parsed twice); a long queue holds
            # only file names, so memory stays bounded by MAX_PARSED_QUEUED requests whatever the backlog.
            parsed = (operation, body) if len(self._waiting) < MAX_PARSED_QUEUED else None
            self._waiting.add(request_id)
            self._queue.put((request_id, path, parsed))
        return request_id

    def waiting(self, request_ids: list[str]) -> set[str]:
        """Those of `request_ids` accepted and not applied yet."""
        with self._lock:
            return self._waiting.intersection(request_ids)

    def close(self) -> None:
        """Stop after the request being applied; the rest stay on disk for the next start."""
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _apply_all(self) -> None:
        while (item := self._queue.get()) is not None:
            request_id, path, parsed = item
            try:
                self._apply(request_id, path, parsed)
            except Exception:
                if self._app.store.closed:
                    return  # stopping: the request stays queued on disk for the next start
                # an emulator bug: reported as the request's INTERNAL failure, not a status that never comes
                traceback.print_exc()
                failed = Outcome()
                failed.reject("", IngestCode.INTERNAL, "the emulator failed to apply this request")
                with self._app.store.write() as conn:
                    conn.execute("INSERT OR IGNORE INTO requests (request_id, project_pk, received_ms, status)"
                                 " VALUES (?, 0, ?, ?)", (request_id, now_ms(), failed.status().SerializeToString()))
            path.unlink(missing_ok=True)
            with self._lock:
                self._waiting.discard(request_id)

    def _apply(self, request_id: str, path: Path, parsed: tuple[RunOperation, bytes] | None) -> None:
        conn = self._app.store.connection()
        if conn.execute("SELECT 1 FROM requests WHERE request_id = ?", (request_id,)).fetchone():
            return  # applied before the emulator was stopped, not yet removed
        if parsed is None:
            body = path.read_bytes()
            parsed = RunOperation.FromString(body), body
        operation, body = parsed
        self._engine.apply(self._app.project_from_qualified(operation.project), operation, request_id,
                           self._app.reject_requests, body)


def register(app: Neptune3App) -> None:
    engine = IngestEngine(app.store)
    router, store = app.router, app.store
    pending = app.ingest_queue = IngestQueue(engine, app)

    @router.route("POST", INGEST_PATH)
    def ingest(request: Request, match: re.Match[str]) -> Response:
        if len(request.body) > MAX_REQUEST_BYTES:
            return Response.error(413, "Payload too large")
        try:
            operation = RunOperation.FromString(request.body)
        except DecodeError:
            return Response.error(400, "Bad request", "body is not a RunOperation")
        if operation.api_key and not app.authority.check_api_key(operation.api_key):
            return Response.error(403, "Forbidden", "API key not valid for this operation")
        # ASSUMPTION: an unknown project (or workspace) is accepted at the HTTP level and reported through
        # the request status as PROJECT_NOT_FOUND, since ingest is asynchronous in the real service.
        if operation.create_missing_project:
            app.ensure_project(operation.project)
        request_id = pending.accept(request.body, operation)
        response = SubmitResponse(request_id=request_id, request_ids=[request_id])
        return Response(200, response.SerializeToString(), content_type=PROTOBUF)

    @router.route("POST", CHECK_PATH)
    def check(request: Request, match: re.Match[str]) -> Response:
        try:
            ids = [i.value for i in RequestIdList.FromString(request.body).ids]
        except DecodeError:
            return Response.error(400, "Bad request", "body is not a RequestIdList")
        waiting = pending.waiting(ids)  # asked before the statuses: a request applied in between has its row
        found: dict[str, bytes] = {}
        conn = store.connection()
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT request_id, status FROM requests WHERE request_id IN ({marks})", chunk))
        bulk = BulkRequestStatus()
        for request_id in ids:
            if request_id in found:
                bulk.statuses.append(RequestStatus.FromString(found[request_id]))
            elif request_id in waiting:
                # not processed yet: the code the client waits on (sync_process.py:475)
                bulk.statuses.add().code_by_count.add(code=Code.UNAVAILABLE, count=1, detail=IngestCode.OK)
            else:
                # ASSUMPTION: an id the service never issued is reported as NOT_FOUND (not UNAVAILABLE, which
                # would make the client wait for it forever).
                bulk.statuses.add().code_by_count.add(code=Code.NOT_FOUND, count=1, detail=IngestCode.INTERNAL)
        return Response(200, bulk.SerializeToString(), content_type=PROTOBUF)

    @router.route("POST", CHECK_DETAILS_PATH)
    def check_details(request: Request, match: re.Match[str]) -> Response:
        try:
            query = BulkCheckDetail.FromString(request.body)
        except DecodeError:
            return Response.error(400, "Bad request", "body is not a BulkCheckDetail")
        limit = query.limit if query.HasField("limit") and query.limit > 0 else 1000
        offset = int(query.next_cursor) if query.HasField("next_cursor") and query.next_cursor.isdigit() else 0
        conn = store.connection()
        rows: list[tuple[str, str, int, str]] = []
        for rid in (i.value for i in query.ids):
            rows.extend(conn.execute(
                "SELECT request_id, path, ingest_code, detail FROM request_errors WHERE request_id = ? ORDER BY seq",
                (rid,),
            ))
        page = rows[offset:offset + limit]
        result = BulkIngestResultDetail(next_cursor=str(offset + limit) if offset + limit < len(rows) else "")
        for rid, path, code, detail in page:
            result.details.append(IngestResultDetail(path=path, ingest_code=code, error_detail=detail))
            result.details[-1].request_id.value = rid
        return Response(200, result.SerializeToString(), content_type=PROTOBUF)


