"""Series points for neptune-query: float metrics, and string / file / histogram series, paged with SQL.

Every page is one range scan of the `points` primary key (attr_pk, step_whole, step_micro) with a LIMIT, in
the order the client asks for, so serving a page costs what the page holds, never the whole series.

Forked runs (`lineage: FULL`): a run's series continues its fork parent's up to the fork step. The lineage is
cut into disjoint step ranges, newest run first: the run's own points, then the parent's points below both the
fork step (inclusive) and the run's own first step, and so on up the chain. Assumption: the service includes
the parent's point AT the fork step, and a child's own points win over inherited ones.

Step ranges and `afterStep` arrive as doubles; they are turned into the stored (whole, micro) parts by rounding
to the nearest microstep, which is exact for every step the protocol can carry below 2**33.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoFloatSeriesValuesResponseDTO,
    ProtoSeriesValuesResponseDTO,
)

from nmig.emulators.neptune3.retrieval_attributes import (
    MICRO,
    STEP_SQL,
    fill_file_ref,
    fill_histogram,
    step_value,
)
from nmig.emulators.neptune3.retrieval_query import QueryError
from nmig.emulators.neptune3.retrieval_runs import RunRow

StepKey = tuple[int, int]
LOWEST: StepKey = (-(2**62), 0)
HIGHEST: StepKey = (2**62, 0)

# The server's own page size for string/file/histogram series (the client pages with opaque tokens): points per
# series per page, points per response, and bytes of values per response (string points may be 1 MiB each).
SERIES_PAGE_POINTS = 10_000
RESPONSE_POINTS = 100_000
RESPONSE_BYTES = 16 * 1024 * 1024
MAX_LINEAGE_DEPTH = 1_000

# The run a fork names as its parent, or None.
ParentResolver = Callable[[RunRow], "RunRow | None"]


def step_key(step: float) -> StepKey:
    if not math.isfinite(step):
        raise QueryError(f"not a finite step: {step}")
    whole = math.floor(step)
    micro = round((step - whole) * MICRO)
    if micro >= MICRO:
        whole, micro = whole + 1, micro - MICRO
    return int(whole), int(micro)


def next_key(key: StepKey) -> StepKey:
    """The smallest step greater than `key` (turns an inclusive upper bound into an exclusive one)."""
    whole, micro = key
    return (whole + 1, 0) if micro + 1 >= MICRO else (whole, micro + 1)


@dataclass(frozen=True)
class Segment:
    """Points of one attribute with lo <= step < hi."""

    attr_pk: int
    lo: StepKey
    hi: StepKey
    point_count: int


def lineage_segments(
    conn: sqlite3.Connection,
    run: RunRow,
    path: str,
    types: frozenset[str],
    full_lineage: bool,
    parent_of: ParentResolver,
) -> list[Segment]:
    """The step ranges making up the series `path` of `run`, highest steps first; empty when it has none."""
    segments: list[Segment] = []
    hi = HIGHEST
    current: RunRow | None = run
    seen: set[int] = set()
    while current is not None and current.run_pk not in seen and len(seen) < MAX_LINEAGE_DEPTH:
        seen.add(current.run_pk)
        attr = conn.execute(
            "SELECT attr_pk, type, point_count FROM attributes WHERE run_pk = ? AND path = ?", (current.run_pk, path)
        ).fetchone()
        if attr is not None and attr[1] in types:
            segments.append(Segment(attr[0], LOWEST, hi, int(attr[2] or 0)))
        if not full_lineage or current.fork_parent_run_id is None or current.fork_step_whole is None:
            break
        if attr is not None and attr[1] in types:
            first = conn.execute(
                "SELECT step_whole, step_micro FROM points WHERE attr_pk = ? ORDER BY step_whole, step_micro LIMIT 1",
                (attr[0],),
            ).fetchone()
            if first is not None:
                hi = min(hi, (first[0], first[1]))
        hi = min(hi, next_key((current.fork_step_whole, current.fork_step_micro or 0)))
        current = parent_of(current)
    return segments


POINT_COLUMNS = "step_whole, step_micro, ts_ms, value, preview, completion_ratio"
# For committed float points only: the step as the double the API returns (SQLite divides in IEEE doubles, as
# Python does), so the fast encoder below gets three numbers per row.
FLOAT_POINT_COLUMNS = f"ts_ms, {STEP_SQL}, value"


def read_points(
    conn: sqlite3.Connection,
    segments: Sequence[Segment],
    lo: StepKey,
    hi: StepKey,
    descending: bool,
    limit: int | None,
    include_preview: bool = True,
    columns: str = POINT_COLUMNS,
) -> list[tuple[Any, ...]]:
    """Up to `limit` points with lo <= step < hi across the lineage, in step order (descending or not)."""
    points: list[tuple[Any, ...]] = []
    direction = "DESC" if descending else "ASC"
    preview_clause = "" if include_preview else " AND preview = 0"
    sql = (
        f"SELECT {columns} FROM points WHERE attr_pk = ? "
        "AND (step_whole, step_micro) >= (?, ?) AND (step_whole, step_micro) < (?, ?)"
        f"{preview_clause} ORDER BY step_whole {direction}, step_micro {direction} LIMIT ?"
    )
    for segment in segments if descending else list(reversed(segments)):
        remaining = -1 if limit is None else limit - len(points)
        if limit is not None and remaining <= 0:
            break
        seg_lo, seg_hi = max(segment.lo, lo), min(segment.hi, hi)
        if seg_lo >= seg_hi:
            continue
        points.extend(conn.execute(sql, (segment.attr_pk, *seg_lo, *seg_hi, remaining)).fetchall())
    return points


def request_bounds(step_range: dict[str, Any] | None) -> tuple[StepKey, StepKey]:
    """[from, to] (both inclusive, either open) as [lo, hi)."""
    step_range = step_range or {}
    low, high = step_range.get("from"), step_range.get("to")
    lo = step_key(float(low)) if low is not None else LOWEST
    hi = next_key(step_key(float(high))) if high is not None else HIGHEST
    return lo, hi


def _after(lo: StepKey, hi: StepKey, after: StepKey | None, descending: bool) -> tuple[StepKey, StepKey]:
    """Narrow [lo, hi) to the points strictly past `after` in the paging direction."""
    if after is None:
        return lo, hi
    return (lo, min(hi, after)) if descending else (max(lo, next_key(after)), hi)


# -- float series (fetch_metrics) ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FloatSeriesRequest:
    request_id: str
    segments: Sequence[Segment] | None  # None: no such series
    include_preview: bool
    after_step: float | None


def float_series_response(
    conn: sqlite3.Connection,
    requests: Sequence[FloatSeriesRequest],
    step_range: dict[str, Any] | None,
    descending: bool,
    per_series_limit: int | None,
) -> ProtoFloatSeriesValuesResponseDTO:
    """One page of each float series; the client asks again with `afterStep` while a page comes back full."""
    lo, hi = request_bounds(step_range)
    response = ProtoFloatSeriesValuesResponseDTO()
    for request in requests:
        entry = response.series.add(requestId=request.request_id)
        if not request.segments:
            continue
        after = step_key(float(request.after_step)) if request.after_step is not None else None
        page_lo, page_hi = _after(lo, hi, after, descending)
        entry.series.total_item_count = sum(segment.point_count for segment in request.segments)
        if not request.include_preview:
            rows = read_points(
                conn, request.segments, page_lo, page_hi, descending, per_series_limit, False, FLOAT_POINT_COLUMNS
            )
            encoded = encode_committed_float_points(rows)
            if encoded is not None:
                entry.series.MergeFromString(encoded)
                continue
            rows = [(ts_ms, step, value, 0, None) for ts_ms, step, value in rows]
        else:
            rows = [
                (ts_ms, step_value(whole, micro), value, preview, ratio)
                for whole, micro, ts_ms, value, preview, ratio in read_points(
                    conn, request.segments, page_lo, page_hi, descending, per_series_limit, True
                )
            ]
        add = entry.series.values.add
        for ts_ms, step, value, preview, ratio in rows:
            add(
                timestamp_millis=ts_ms,
                step=step,
                value=math.nan if value is None else value,
                is_preview=bool(preview),
                # Assumption: a committed point reports completion 1.0; previews report what the client sent.
                completion_ratio=1.0 if not preview or ratio is None else ratio,
            )
    return response


# Timestamps between 2**35 ms (1971-02) and 2**42 ms (2109) take exactly 6 varint bytes, so every committed point
# with such a timestamp serializes to the same 32 bytes: field tag and length, then timestamp_millis (varint),
# step and value (doubles) and completion_ratio 1.0 (float), as protobuf lays out ProtoFloatPointValueDTO.
_TS_LOW, _TS_HIGH = 2**35, 2**42
_POINT_BYTES = 32


def encode_committed_float_points(rows: Sequence[tuple[Any, ...]]) -> bytes | None:
    """The serialized `values` of a ProtoFloatSeriesValuesDTO for (ts_ms, step, value) rows, built with numpy.

    None when a row does not fit the fixed layout (a timestamp outside 1971-2109, a NULL value): the caller
    then encodes point by point. Equivalent to adding each point to the message (checked by the tests).
    """
    import numpy as np

    count = len(rows)
    if count == 0:
        return b""
    try:
        table = np.fromiter(rows, dtype=[("ts", "<i8"), ("step", "<f8"), ("value", "<f8")], count=count)
    except (TypeError, ValueError, OverflowError):
        return None
    ts = table["ts"]
    if ts.min() < _TS_LOW or ts.max() >= _TS_HIGH:
        return None
    out = np.empty((count, _POINT_BYTES), dtype=np.uint8)
    out[:, 0] = 0x12  # field 2 (values), length-delimited
    out[:, 1] = _POINT_BYTES - 2
    out[:, 2] = 0x08  # field 1 (timestamp_millis), varint
    for k in range(5):
        out[:, 3 + k] = ((ts >> (7 * k)) & 0x7F) | 0x80
    out[:, 8] = ts >> 35
    out[:, 9] = 0x11  # field 2 (step), 64-bit
    out[:, 10:18] = np.ascontiguousarray(table["step"]).view(np.uint8).reshape(count, 8)
    out[:, 18] = 0x19  # field 3 (value), 64-bit
    out[:, 19:27] = np.ascontiguousarray(table["value"]).view(np.uint8).reshape(count, 8)
    out[:, 27] = 0x2D  # field 5 (completion_ratio), 32-bit
    out[:, 28:32] = np.frombuffer(np.float32(1.0).tobytes(), dtype=np.uint8)
    return out.tobytes()


# -- string, file and histogram series (fetch_series, download_files) -------------------------------------------


@dataclass(frozen=True)
class SeriesRequest:
    request_id: str
    segments: Sequence[Segment] | None  # None: no such series (left out of the answer, as the service does)
    series_type: str  # string_series | file_series | histogram_series
    token: str | None  # the searchAfter token of the previous page


def _encode_token(last: StepKey | None, sent: int) -> str:
    return "end" if last is None else f"{last[0]}:{last[1]}:{sent}"


def _decode_token(token: str | None) -> tuple[StepKey | None, int]:
    if not token or token == "end":
        return None, 0
    try:
        whole, micro, sent = (int(part) for part in token.split(":"))
    except ValueError as exc:
        raise QueryError(f"malformed searchAfter token: {token[:40]!r}") from exc
    if not 0 <= micro < MICRO or sent < 0:
        raise QueryError("malformed searchAfter token")
    return (whole, micro), sent


def _value_size(value: Any) -> int:
    return len(value) if isinstance(value, str | bytes) else 16


def series_response(
    conn: sqlite3.Connection,
    requests: Sequence[SeriesRequest],
    step_range: dict[str, Any] | None,
    descending: bool,
    total_limit: int | None,
    deprecated_string_fields: bool = False,
) -> ProtoSeriesValuesResponseDTO:
    """One page of each series, with the searchAfter token the client sends back.

    `perSeriesPointsLimit` is a limit on the whole series across pages (neptune-query passes its tail limit
    there and pages until `finished`). When the response budget runs out, the series not reached yet are
    answered without values and without a token, which tells the client to ask for them again from the start.
    """
    lo, hi = request_bounds(step_range)
    response = ProtoSeriesValuesResponseDTO()
    points_budget, bytes_budget = RESPONSE_POINTS, RESPONSE_BYTES
    for request in requests:
        if request.segments is None:
            continue
        entry = response.series.add(requestId=request.request_id)
        entry.seriesValues.SetInParent()
        if points_budget <= 0 or bytes_budget <= 0:
            continue  # deferred: no searchAfter
        after, sent = _decode_token(request.token)
        want = SERIES_PAGE_POINTS if total_limit is None else max(0, min(SERIES_PAGE_POINTS, total_limit - sent))
        want = min(want, points_budget)
        page_lo, page_hi = _after(lo, hi, after, descending)
        rows = read_points(conn, request.segments, page_lo, page_hi, descending, want + 1) if want else []
        more = len(rows) > want
        rows = rows[:want]
        kept = 0
        for whole, micro, ts_ms, value, preview, ratio in rows:
            size = _value_size(value)
            if kept and size > bytes_budget:
                more = True
                break
            point = entry.seriesValues.values.add(
                timestamp_millis=ts_ms,
                step=step_value(whole, micro),
                is_preview=bool(preview),
                completion_ratio=1.0 if not preview or ratio is None else ratio,
            )
            if request.series_type == "string_series":
                if deprecated_string_fields:
                    point.value = str(value)
                else:
                    point.object.stringValue = str(value)
            elif request.series_type == "file_series":
                fill_file_ref(point.object.fileRef, value)
            else:
                fill_histogram(point.object.histogram, value)
            kept += 1
            bytes_budget -= size
        points_budget -= kept
        sent += kept
        if total_limit is not None and sent >= total_limit:
            more = False
        last = (rows[kept - 1][0], rows[kept - 1][1]) if kept else after
        entry.searchAfter.finished = not more
        entry.searchAfter.token = _encode_token(last, sent)
    return response
