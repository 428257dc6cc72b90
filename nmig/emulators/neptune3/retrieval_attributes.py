"""Attribute rows of the store as neptune-query sees them: backend type names, protobuf values, filter values.

The store keeps one `attributes` row per (run, path) with neptune-query's type names and, for series, running
aggregates; this module turns such rows into `ProtoAttributeDTO` messages (what the leaderboard and attribute
queries answer) and into the plain values the run-filter language compares (`retrieval_query.TypedValue`).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from neptune_query.generated.neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2 import (
    ProtoAttributeDTO,
)

from nmig.emulators.neptune3.retrieval_query import AttributeRef, TypedValue

MICRO = 1_000_000

# neptune-query's own names (stored) <-> the backend's names (on the wire); the others are the same on both.
_TO_BACKEND = {
    "float_series": "floatSeries",
    "string_set": "stringSet",
    "string_series": "stringSeries",
    "file": "fileRef",
    "file_series": "fileRefSeries",
    "histogram_series": "histogramSeries",
}
_FROM_BACKEND = {backend: stored for stored, backend in _TO_BACKEND.items()}
SERIES_TYPES = frozenset({"float_series", "string_series", "file_series", "histogram_series"})


def to_backend_type(stored: str) -> str:
    return _TO_BACKEND.get(stored, stored)


def from_backend_type(backend: str) -> str:
    return _FROM_BACKEND.get(backend, backend)


def step_value(whole: int | None, micro: int | None) -> float:
    """The step the protocol carries as whole and micro parts, as the double the read API returns: the double
    nearest to whole + micro / 10**6 (Python's int division is correctly rounded; whole + micro / 1e6 is not
    always: 43 + 0.132479 gives 43.132479000000004, one double above the step a client logged as 43.132479)."""
    return ((whole or 0) * MICRO + (micro or 0)) / MICRO


# The same double in SQLite: below 2**33 the micro-unit count is an exact double, divided once; from 2**33 up
# every double is a whole number of micro-units away from its whole part, so adding the rounded micro part is
# exact (step_whole * 10**6 itself would no longer fit a double there).
STEP_SQL = (
    "(CASE WHEN step_whole < 8589934592 THEN (step_whole * 1000000 + step_micro) / 1000000.0"
    " ELSE step_whole + step_micro / 1000000.0 END)"
)


ATTRIBUTE_COLUMNS = (
    "a.attr_pk, a.run_pk, a.path, a.type, a.value, a.last_step_whole, a.last_step_micro, a.last_ts_ms, "
    "a.point_count, a.agg_min, a.agg_max, a.agg_sum, a.agg_sumsq"
)


@dataclass
class AttributeRow:
    attr_pk: int
    run_pk: int
    path: str
    type: str  # neptune-query's name, as stored
    value: Any
    last_step_whole: int | None
    last_step_micro: int | None
    last_ts_ms: int | None
    point_count: int
    agg_min: float | None
    agg_max: float | None
    agg_sum: float | None
    agg_sumsq: float | None
    members: frozenset[str] = frozenset()  # string_set only

    @property
    def last_step(self) -> float:
        return step_value(self.last_step_whole, self.last_step_micro)

    def float_aggregate(self, aggregation: str | None) -> float | None:
        """last, min, max, average or (population) variance of a float series; None for an empty series."""
        if self.point_count <= 0:
            return None
        if aggregation in (None, "last"):
            return float(self.value) if self.value is not None else None
        if aggregation == "min":
            return self.agg_min
        if aggregation == "max":
            return self.agg_max
        mean = (self.agg_sum or 0.0) / self.point_count
        if aggregation == "average":
            return mean
        if aggregation == "variance":
            # Assumption: the service reports the population variance (divides by n, not n - 1).
            return max(0.0, (self.agg_sumsq or 0.0) / self.point_count - mean * mean)
        return None


def load_attribute_rows(
    conn: sqlite3.Connection,
    run_pks: Sequence[int],
    paths: Iterable[str] | None = None,
) -> list[AttributeRow]:
    """The attribute rows of `run_pks` (all of them, or only `paths`), ordered by run then path.

    Lists travel as one JSON parameter (json_each), so no SQL variable limit applies to long id lists.
    """
    if not run_pks:
        return []
    sql = f"SELECT {ATTRIBUTE_COLUMNS} FROM attributes a WHERE a.run_pk IN (SELECT value FROM json_each(?))"
    args: list[Any] = [json.dumps(list(run_pks))]
    if paths is not None:
        sql += " AND a.path IN (SELECT value FROM json_each(?))"
        args.append(json.dumps(sorted(set(paths))))
    rows = [AttributeRow(*row) for row in conn.execute(sql + " ORDER BY a.run_pk, a.path", args)]
    set_rows = {row.attr_pk: row for row in rows if row.type == "string_set"}
    if set_rows:
        members: dict[int, set[str]] = {}
        for attr_pk, member in conn.execute(
            "SELECT attr_pk, member FROM string_set_members WHERE attr_pk IN (SELECT value FROM json_each(?))",
            (json.dumps(list(set_rows)),),
        ):
            members.setdefault(attr_pk, set()).add(member)
        for attr_pk, row in set_rows.items():
            row.members = frozenset(members.get(attr_pk, ()))
    return rows


def _float(value: Any) -> float:
    # SQLite stores a NaN REAL as NULL: a float config with no value is the NaN the client sent.
    return math.nan if value is None else float(value)


def _stored_object(value: Any) -> dict[str, Any]:
    """A JSON object stored in a value column; {} for a damaged row (served, not crashing)."""
    try:
        data = json.loads(value) if isinstance(value, str | bytes) else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _file_fields(value: Any) -> tuple[str, int, str]:
    """(path, size, mime type) of a stored file reference."""
    data = _stored_object(value)
    return str(data.get("path", "")), int(data.get("size_bytes") or 0), str(data.get("mime_type", ""))


def _histogram_fields(value: Any) -> tuple[str, list[float], list[float]]:
    data = _stored_object(value)
    return str(data.get("type", "")), [float(x) for x in data.get("edges", [])], [float(x) for x in data.get("values", [])]


def fill_file_ref(target: Any, value: Any) -> None:
    target.path, target.sizeBytes, target.mimeType = _file_fields(value)


def fill_histogram(target: Any, value: Any) -> None:
    kind, edges, values = _histogram_fields(value)
    target.type = kind
    target.edges.extend(edges)
    target.values.extend(values)


# The ProtoAttributeDTO field holding each stored type's properties.
_PROPERTIES_FIELD = {
    "float": "float_properties",
    "int": "int_properties",
    "string": "string_properties",
    "bool": "bool_properties",
    "datetime": "datetime_properties",
    "string_set": "string_set_properties",
    "file": "file_ref_properties",
    "float_series": "float_series_properties",
    "string_series": "string_series_properties",
    "file_series": "file_ref_series_properties",
    "histogram_series": "histogram_series_properties",
}
# How each single-value type's stored value becomes its `value` property.
_ATOM_VALUE = {"float": _float, "int": int, "string": str, "bool": bool, "datetime": int}


def to_proto(row: AttributeRow, target: ProtoAttributeDTO | None = None) -> ProtoAttributeDTO:
    """The attribute as the leaderboard and attribute-query endpoints answer it."""
    attr = target if target is not None else ProtoAttributeDTO()
    backend_type = to_backend_type(row.type)
    attr.name = row.path
    attr.type = backend_type
    field_name = _PROPERTIES_FIELD.get(row.type)
    if field_name is None:
        return attr
    props: Any = getattr(attr, field_name)
    if row.type in _ATOM_VALUE:
        props.value = _ATOM_VALUE[row.type](row.value)
    elif row.type == "string_set":
        props.value.extend(sorted(row.members))
    elif row.type == "file":
        fill_file_ref(props, row.value)
    elif row.point_count > 0:  # a series that has points: its last step, and its last value or aggregates
        props.last_step = row.last_step
        if row.type == "float_series":
            for name in ("last", "min", "max", "average", "variance"):
                aggregate = row.float_aggregate(name)
                if aggregate is not None:
                    setattr(props, name, aggregate)
        elif row.type == "string_series":
            props.last = str(row.value)
        elif row.type == "file_series":
            fill_file_ref(props.last, row.value)
        else:
            fill_histogram(props.last, row.value)
    props.attribute_name = row.path
    props.attribute_type = backend_type
    return attr


def typed_value(row: AttributeRow, ref: AttributeRef) -> TypedValue | None:
    """What the filter language compares for `ref` on this row; None when the row does not answer it."""
    if ref.type is not None and from_backend_type(ref.type) != row.type:
        return None
    backend_type = to_backend_type(row.type)
    if row.type == "string_set":
        return TypedValue(backend_type, row.members)
    if row.type == "float_series":
        aggregate = row.float_aggregate(ref.aggregation)
        return TypedValue(backend_type, aggregate)
    if row.type in ("string_series",):
        return TypedValue(backend_type, str(row.value) if row.point_count > 0 else None)
    if row.type in ("file", "file_series", "histogram_series"):
        return TypedValue(backend_type, None)  # exists, but compares with nothing
    if row.type == "float":
        value = _float(row.value)
        return TypedValue(backend_type, None if math.isnan(value) else value)
    if row.type == "bool":
        return TypedValue(backend_type, bool(row.value))
    return TypedValue(backend_type, row.value)
