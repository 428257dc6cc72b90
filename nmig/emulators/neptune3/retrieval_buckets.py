"""Metric buckets for neptune-query's `fetch_metric_buckets` (POST .../proto/attributes/timeseries/buckets).

The request is a protobuf `ProtoGetTimeseriesBucketsRequest`: expressions (one per run and metric, the metric
named by the formula `${path}`), and a view (`maxBuckets`, an optional x range, linear scales, x = steps).

ASSUMPTIONS (the bucketing is not documented; these follow what neptune-query does with the answer):
- All series of one request share the bucket edges (the client pivots them into one table). The x range is the
  view's `from`/`to` when given, else the smallest and largest step among the request's series.
- `maxBuckets` counts a leading bucket (-inf, first step] and `maxBuckets - 1` buckets of equal width over
  (first step, last step] (neptune-query asks for one bucket more than the user's limit and merges the leading
  one into the next). When all points share one step, the answer is the single bucket (step, +inf).
- Each bucket reports its first and last finite points, min, max, sum and the counts of finite, NaN and
  infinite values; empty buckets are answered without first/last.
"""

from __future__ import annotations

import math
import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.requests_pb2 import (
    ProtoGetTimeseriesBucketsRequest,
    ProtoLineage,
    ProtoScale,
)
from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2 import (
    ProtoTimeseriesBucketsDTO,
)

from nmig.emulators.neptune3.retrieval_attributes import STEP_SQL
from nmig.emulators.neptune3.retrieval_query import QueryError
from nmig.emulators.neptune3.retrieval_series import HIGHEST, LOWEST, Segment, StepKey, next_key, step_key

MAX_BUCKETS = 1_001  # neptune-query's limit of 1,000, plus its leading bucket
_FORMULA = re.compile(r"\$\{((?:[^\\{}$]|\\[\\${}])*)\}")


def formula_attribute(formula: str) -> str:
    """The attribute path of a `${path}` formula (the only formula neptune-query sends)."""
    match = _FORMULA.fullmatch(formula)
    if match is None:
        raise QueryError(f"unsupported formula: {formula[:80]!r}")
    return re.sub(r"\\(.)", r"\1", match.group(1))


@dataclass
class _Bucket:
    from_x: float
    to_x: float
    first: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    low: float = math.inf
    high: float = -math.inf
    total: float = 0.0
    finite: int = 0
    nans: int = 0
    positive_inf: int = 0
    negative_inf: int = 0

    def add(self, x: float, y: float) -> None:
        if math.isnan(y):
            self.nans += 1
            return
        if math.isinf(y):
            if y > 0:
                self.positive_inf += 1
            else:
                self.negative_inf += 1
            return
        if self.first is None:
            self.first = (x, y)
        self.last = (x, y)
        self.low, self.high = min(self.low, y), max(self.high, y)
        self.total += y
        self.finite += 1


def iterate_points(
    conn: sqlite3.Connection, segments: Sequence[Segment], lo: StepKey, hi: StepKey, include_preview: bool
) -> Iterator[tuple[float, float]]:
    """(step, value) of the lineage in ascending steps, streamed from SQLite (never the whole series in memory)."""
    preview_clause = "" if include_preview else " AND preview = 0"
    sql = (
        f"SELECT {STEP_SQL}, value FROM points WHERE attr_pk = ? "
        "AND (step_whole, step_micro) >= (?, ?) AND (step_whole, step_micro) < (?, ?)"
        f"{preview_clause} ORDER BY step_whole, step_micro"
    )
    for segment in reversed(segments):
        seg_lo, seg_hi = max(segment.lo, lo), min(segment.hi, hi)
        if seg_lo < seg_hi:
            for step, value in conn.execute(sql, (segment.attr_pk, *seg_lo, *seg_hi)):
                yield step, math.nan if value is None else float(value)


def _step_extent(conn: sqlite3.Connection, segments: Sequence[Segment], lo: StepKey, hi: StepKey) -> tuple[float, float] | None:
    """Smallest and largest step of the lineage within [lo, hi) (two index lookups per segment)."""
    smallest: float | None = None
    largest: float | None = None
    for segment in segments:
        seg_lo, seg_hi = max(segment.lo, lo), min(segment.hi, hi)
        if seg_lo >= seg_hi:
            continue
        bounds = (segment.attr_pk, *seg_lo, *seg_hi)
        where = "attr_pk = ? AND (step_whole, step_micro) >= (?, ?) AND (step_whole, step_micro) < (?, ?)"
        for direction in ("ASC", "DESC"):
            row = conn.execute(
                f"SELECT {STEP_SQL} FROM points WHERE {where} "
                f"ORDER BY step_whole {direction}, step_micro {direction} LIMIT 1",
                bounds,
            ).fetchone()
            if row is not None:
                smallest = row[0] if smallest is None else min(smallest, row[0])
                largest = row[0] if largest is None else max(largest, row[0])
    return None if smallest is None or largest is None else (smallest, largest)


SegmentsOf = Callable[[str, str, bool], "Sequence[Segment] | None"]  # (run identifier, path, full lineage)


def buckets_response(conn: sqlite3.Connection, body: bytes, segments_of: SegmentsOf) -> ProtoTimeseriesBucketsDTO:
    try:
        request = ProtoGetTimeseriesBucketsRequest.FromString(body)
    except Exception as exc:  # protobuf's DecodeError, and anything else a damaged body raises
        raise QueryError("body is not a ProtoGetTimeseriesBucketsRequest") from exc
    view = request.view
    if not 1 <= view.maxBuckets <= MAX_BUCKETS:
        raise QueryError(f"maxBuckets must be between 1 and {MAX_BUCKETS}")
    if view.xScale != ProtoScale.linear or view.yScale != ProtoScale.linear:
        raise QueryError("only linear scales are supported")
    if view.xAxis.WhichOneof("value") not in (None, "steps"):
        raise QueryError("only steps are supported on the x axis")

    lo, hi = LOWEST, HIGHEST
    if view.HasField("pointFilters") and view.pointFilters.HasField("stepRange"):
        step_range = view.pointFilters.stepRange
        if step_range.HasField("from"):
            lo = step_key(getattr(step_range, "from"))
        if step_range.HasField("to"):
            hi = next_key(step_key(step_range.to))

    series: list[tuple[str, Sequence[Segment], bool]] = []
    for expression in request.expressions:
        path = formula_attribute(expression.customYFormula)
        segments = segments_of(expression.runId, path, expression.lineage == ProtoLineage.FULL)
        series.append((expression.requestId, segments or (), expression.includePreview))

    if view.HasField("from") and view.HasField("to"):
        extent: tuple[float, float] | None = (getattr(view, "from"), view.to)
    else:
        extents = [e for _, segments, _ in series if (e := _step_extent(conn, segments, lo, hi)) is not None]
        extent = (min(e[0] for e in extents), max(e[1] for e in extents)) if extents else None

    response = ProtoTimeseriesBucketsDTO()
    for request_id, segments, include_preview in series:
        entry = response.entries.add(requestId=request_id)
        if extent is None:
            continue
        low_x, high_x = extent
        if high_x <= low_x:
            buckets = [_Bucket(low_x, math.inf)]

            def index_of(x: float, _low: float = low_x) -> int | None:
                return 0 if x >= _low else None
        else:
            count = max(1, view.maxBuckets - 1)
            width = (high_x - low_x) / count
            buckets = [_Bucket(-math.inf, low_x)] + [
                _Bucket(low_x + i * width, high_x if i == count - 1 else low_x + (i + 1) * width)
                for i in range(count)
            ]

            def index_of(
                x: float, _low: float = low_x, _high: float = high_x, _width: float = width, _count: int = count
            ) -> int | None:
                if x <= _low:
                    return 0
                if x > _high:
                    return None
                # Buckets are (from, to]: a step on an edge belongs to the bucket below it.
                return min(_count, max(1, math.ceil((x - _low) / _width)))

        for x, y in iterate_points(conn, segments, lo, hi, include_preview):
            index = index_of(x)
            if index is not None:
                buckets[index].add(x, y)
        for index, bucket in enumerate(buckets):
            out = entry.bucket.add(
                index=index, fromX=bucket.from_x, toX=bucket.to_x, finitePointCount=bucket.finite,
                nanCount=bucket.nans, positiveInfCount=bucket.positive_inf, negativeInfCount=bucket.negative_inf,
            )
            if bucket.first is not None and bucket.last is not None:
                out.first.x, out.first.y = bucket.first
                out.last.x, out.last.y = bucket.last
                out.localMin, out.localMax, out.localSum = bucket.low, bucket.high, bucket.total
    return response
