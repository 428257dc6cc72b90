"""Decoding one page of float or string series values straight into Arrow columns.

A 10,000-point page is ~800 KB of JSON. Python's json module plus a Python object per point costs several
times the server's own time per page; Arrow's JSON reader parses it in C++ with exact number conversion
(verified bit for bit, -0.0, subnormals and the 2.x API's bare NaN/Infinity tokens included; see the tests),
so the client is no longer the bottleneck. Anything Arrow cannot read (a lone surrogate in a string, an odd
field type) falls back to the json module, so no page is ever refused for speed's sake.
"""

from __future__ import annotations

import io
import json
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.json as pa_json

_VALUE_TYPES = {"float": pa.float64(), "string": pa.string()}


def _page_schema(kind: str) -> pa.Schema:
    point = pa.struct(
        [("step", pa.float64()), ("timestampMillis", pa.int64()), ("value", _VALUE_TYPES[kind])]
    )
    return pa.schema([("totalItemCount", pa.int64()), ("values", pa.list_(point))])


_SCHEMAS = {kind: _page_schema(kind) for kind in _VALUE_TYPES}


class PageError(ValueError):
    """The page is not what the API promises (missing steps or timestamps, wrong types)."""


@dataclass
class ValuePage:
    total: int
    steps: pa.Array  # float64
    values: pa.Array  # float64 or string
    timestamps: pa.Array  # int64 epoch milliseconds

    def __len__(self) -> int:
        return len(self.steps)

    def nbytes(self) -> int:
        return int(self.steps.nbytes + self.values.nbytes + self.timestamps.nbytes)

    def last_step(self) -> float:
        return float(self.steps[len(self.steps) - 1].as_py())

    def after_step(self, step: float) -> ValuePage:
        """The points after `step` (the page's steps increase, as a 2.x float series' do)."""
        import numpy as np

        start = int(np.searchsorted(self.steps.to_numpy(zero_copy_only=False), step, "right"))
        if start == 0:
            return self
        return ValuePage(
            self.total, self.steps.slice(start), self.values.slice(start), self.timestamps.slice(start)
        )


class PageHold:
    """Pages answered ahead of their turn: kept in memory up to `limit` bytes for the series, the rest written
    to a file in `folder` until their turn comes, so a long wait for one page (a Retry-After) can let many
    pages behind it be answered without memory growing with them. Thread-safe."""

    def __init__(self, folder: Path, limit: int) -> None:
        self._folder = folder
        self._limit = limit
        self._held = 0
        self._lock = threading.Lock()

    def hold(self, page: Any) -> Any:
        """`page` itself, or a `SpilledPage` standing for it."""
        if not isinstance(page, ValuePage):
            return page
        size = page.nbytes()
        with self._lock:
            if self._held + size <= self._limit:
                self._held += size
                return page
        batch = pa.record_batch([page.steps, page.values, page.timestamps], names=["step", "value", "timestamp"])
        with tempfile.NamedTemporaryFile(dir=self._folder, prefix="page-", suffix=".arrow", delete=False) as out:
            with pa.ipc.new_file(out, batch.schema) as writer:
                writer.write_batch(batch)
        return SpilledPage(page.total, Path(out.name))

    def take(self, held: Any) -> Any:
        """The page `hold` returned `held` for; a spilled one is read back into memory."""
        try:
            if isinstance(held, SpilledPage):
                with pa.OSFile(str(held.path)) as source:
                    batch = pa.ipc.open_file(source).read_all()
                return ValuePage(held.total, *(batch.column(i).combine_chunks() for i in range(3)))
            return held
        finally:
            self.drop(held)

    def drop(self, held: Any) -> None:
        """Let go of what `hold` returned: its share of the memory budget, or its file."""
        if isinstance(held, SpilledPage):
            held.path.unlink(missing_ok=True)
        elif isinstance(held, ValuePage):
            with self._lock:
                self._held -= held.nbytes()


@dataclass
class SpilledPage:
    total: int
    path: Path


# Below this size the json module is faster: Arrow's reader has a fixed cost of about a millisecond per call.
ARROW_MIN_BYTES = 64 * 1024


def decode_value_page(body: bytes, kind: str) -> ValuePage:
    """A getFloatSeriesValues / getStringSeriesValues response body as Arrow columns."""
    try:
        if len(body) < ARROW_MIN_BYTES:
            raise PageError("small page")
        page = _decode_arrow(body, kind)
    except (pa.ArrowException, PageError, ValueError):
        page = _decode_python(body, kind)
    if page.steps.null_count or page.timestamps.null_count:
        raise PageError("a point without step or timestamp")
    if kind == "float" and page.values.null_count:
        raise PageError("a float point without a value")
    return page


def _decode_arrow(body: bytes, kind: str) -> ValuePage:
    table = pa_json.read_json(
        io.BytesIO(body),
        # One JSON object per response: the block must hold all of it.
        read_options=pa_json.ReadOptions(block_size=max(len(body) + 64, 1 << 16), use_threads=False),
        parse_options=pa_json.ParseOptions(explicit_schema=_SCHEMAS[kind], unexpected_field_behavior="ignore"),
    )
    if table.num_rows != 1:
        raise PageError("expected one JSON object")
    total = table.column("totalItemCount")[0].as_py()
    points_list = table.column("values").combine_chunks()
    if total is None:
        raise PageError("no totalItemCount")
    if points_list.null_count:  # "values" missing: an empty page
        return _empty(int(total), kind)
    points = points_list.flatten()
    return ValuePage(int(total), points.field("step"), points.field("value"), points.field("timestampMillis"))


def _decode_python(body: bytes, kind: str) -> ValuePage:
    doc: Any = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("totalItemCount"), int):
        raise PageError("the response has no totalItemCount")
    points = doc.get("values") or []
    try:
        steps = pa.array([float(p["step"]) for p in points], pa.float64())
        timestamps = pa.array([int(p["timestampMillis"]) for p in points], pa.int64())
        if kind == "float":
            # float() reads the API's "NaN" / "Infinity" strings too, should a server send those.
            values = pa.array([float(p["value"]) for p in points], pa.float64())
        else:
            values = pa.array([p.get("value") for p in points], pa.string())
    except (KeyError, TypeError, ValueError, pa.ArrowException) as exc:
        raise PageError(f"malformed point: {exc}") from None
    return ValuePage(doc["totalItemCount"], steps, values, timestamps)


def _empty(total: int, kind: str) -> ValuePage:
    return ValuePage(
        total, pa.array([], pa.float64()), pa.array([], _VALUE_TYPES[kind]), pa.array([], pa.int64())
    )


