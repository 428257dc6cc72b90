"""The emulator's whole-request decoding of plain float points (float_batch) agrees with protobuf, and its
bulk ingest leaves exactly what the per-message path leaves."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import UpdateRunSnapshots
from neptune_api.proto.neptune_pb.ingest.v1.ingest_pb2 import IngestCode
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from nmig.emulators.neptune3 import ingest
from nmig.emulators.neptune3.float_batch import decode_float_points, update_batch_bytes
from nmig.emulators.neptune3.ingest import IngestEngine
from nmig.emulators.neptune3.store import DB_FILE, Store

_point = st.tuples(
    st.integers(0, 2**63 - 1),  # whole
    st.integers(0, 2**63 - 1),  # micro
    st.integers(-(10**15) + 1, 10**15 - 1),  # seconds
    st.integers(-(2**31), 2**31 - 1),  # nanos
    st.floats(allow_nan=True, allow_infinity=True),
)
_path = st.text(min_size=1, max_size=300).filter(lambda p: "\x00" not in p)


def _encoded(path: str, points: list[tuple[int, int, int, int, float]]) -> bytes:
    batch = UpdateRunSnapshots()
    for whole, micro, seconds, nanos, value in points:
        snapshot = batch.snapshots.add()
        snapshot.step.whole, snapshot.step.micro = whole, micro
        snapshot.timestamp.seconds, snapshot.timestamp.nanos = seconds, nanos
        snapshot.append[path].float64 = value
    return batch.SerializeToString()


@settings(max_examples=150, deadline=None)
@given(path=_path, points=st.lists(_point, min_size=1, max_size=40))
def test_decoded_points_are_what_protobuf_reads(path: str, points: list[tuple[int, int, int, int, float]]) -> None:
    data = _encoded(path, points)
    decoded = decode_float_points(data)
    assert decoded is not None
    parsed = UpdateRunSnapshots.FromString(data).snapshots
    assert decoded.path == path
    assert decoded.whole.tolist() == [s.step.whole for s in parsed]
    assert decoded.micro.tolist() == [s.step.micro for s in parsed]
    assert decoded.ts_ms.tolist() == [ingest._ts_ms(s.timestamp) for s in parsed]
    for got, snapshot in zip(decoded.values.tolist(), parsed, strict=True):
        want = snapshot.append[path].float64
        assert (math.isnan(got) and math.isnan(want)) or (got == want and math.copysign(1, got) == math.copysign(1, want))


def test_every_other_shape_is_left_to_the_per_message_path() -> None:
    plain = (1, 0, 1_700_000_000, 0, 0.5)
    assert decode_float_points(_encoded("m", [plain] * 3)) is not None
    shapes: dict[str, Any] = {}
    two_paths = UpdateRunSnapshots.FromString(_encoded("a", [plain]) + _encoded("b", [plain]))
    shapes["two paths"] = two_paths
    for name, change in {
        "an int value": lambda s: s.append["m"].__setattr__("int64", 3),
        "two appends": lambda s: s.append["n"].__setattr__("float64", 1.0),
        "an assign": lambda s: s.assign["c"].__setattr__("float64", 1.0),
        "a preview": lambda s: s.preview.__setattr__("is_preview", True),
        "a request id": lambda s: s.__setattr__("request_id", "x"),
        "no step": lambda s: s.ClearField("step"),
        "no timestamp": lambda s: s.ClearField("timestamp"),
        "a set change": lambda s: s.modify_sets["tags"].string.values.__setitem__("t", 1),
    }.items():
        batch = UpdateRunSnapshots.FromString(_encoded("m", [plain] * 3))
        change(batch.snapshots[1])
        shapes[name] = batch
    for name, batch in shapes.items():
        assert decode_float_points(batch.SerializeToString()) is None, name
    assert decode_float_points(b"") is None
    assert decode_float_points(_encoded("m", [plain])[:-1]) is None  # cut short
    assert decode_float_points(_encoded("m", [plain]) + b"\x10\x01") is None  # a field after the snapshots


def test_the_update_batch_is_found_in_the_bytes_received() -> None:
    batch = UpdateRunSnapshots.FromString(_encoded("m", [(1, 0, 1_700_000_000, 0, 0.5)] * 3))
    operation = RunOperation(project="ws/" + "p" * 200, run_id="r", create_missing_project=True, api_key=b"k" * 300,
                             update_batch=batch)
    received = operation.SerializeToString()
    assert update_batch_bytes(received) == batch.SerializeToString()
    # fields in another order parse to the same message: the batch is still its own bytes
    moved = RunOperation(update_batch=batch).SerializeToString() + RunOperation(project="ws/p").SerializeToString()
    assert update_batch_bytes(moved) == batch.SerializeToString()
    # twice (protobuf merges both copies), absent, or damaged: not found, the caller encodes the parsed message
    assert update_batch_bytes(received + RunOperation(update_batch=batch).SerializeToString()) is None
    assert update_batch_bytes(RunOperation(project="ws/p", run_id="r").SerializeToString()) is None
    assert update_batch_bytes(received[:-1]) is None
    assert update_batch_bytes(received + b"\x80") is None
    assert update_batch_bytes(b"\x0b") is None  # a group (wire type 3)
    assert update_batch_bytes(b"") is None


def _rows(folder: Path) -> tuple[list[Any], list[Any], list[Any]]:
    db = sqlite3.connect(folder / DB_FILE)
    try:
        points = db.execute("SELECT * FROM points ORDER BY attr_pk, step_whole, step_micro").fetchall()
        attributes = db.execute("SELECT path, type, value, last_step_whole, last_step_micro, last_ts_ms, point_count,"
                                " agg_min, agg_max, agg_sum, agg_sumsq FROM attributes WHERE path NOT LIKE 'sys/%' ORDER BY path").fetchall()
        errors = db.execute("SELECT path, ingest_code FROM request_errors ORDER BY request_id, seq").fetchall()
    finally:
        db.close()
    return points, attributes, errors


def _replay(folder: Path, requests: list[RunOperation], bulk: bool) -> tuple[list[Any], list[Any], list[Any], int]:
    store = Store(folder)
    taken = []
    try:
        project = store.create_project("demo", "p")
        engine = IngestEngine(store)
        real = engine._bulk_floats

        def counted(*args: Any) -> bool:
            done = bulk and real(*args)
            taken.append(done)
            return done

        engine._bulk_floats = counted  # type: ignore[method-assign]
        engine.apply(project, RunOperation(project="demo/p", run_id="r", create=CreateRun(family="r")), "create")
        for number, request in enumerate(requests):
            # as the emulator applies a request: with the bytes it was received as (the batch read from them)
            engine.apply(project, request, f"req-{number}", received=request.SerializeToString())
    finally:
        store.close()
    return (*_rows(folder), sum(taken))


def _request(path: str, steps: list[float], stamps_ms: list[int], values: list[float]) -> RunOperation:
    batch = UpdateRunSnapshots()
    for step, ms, value in zip(steps, stamps_ms, values, strict=True):
        snapshot = batch.snapshots.add()
        snapshot.step.whole, snapshot.step.micro = int(step), round((step - int(step)) * 1e6)
        snapshot.timestamp.seconds, snapshot.timestamp.nanos = divmod(ms, 1000)[0], divmod(ms, 1000)[1] * 1_000_000
        snapshot.append[path].float64 = value
    return RunOperation(project="demo/p", run_id="r", update_batch=batch)


def test_bulk_ingest_leaves_what_the_per_message_path_leaves(tmp_path: Path) -> None:
    n = ingest.BULK_MIN_POINTS * 2
    rng = np.random.default_rng(7)
    values = rng.normal(size=4 * n).tolist()
    values[5] = float("nan")
    values[6] = -0.0
    first = _request("m/a", list(range(n)), [-5_000 + i for i in range(n)], values[:n])  # creates the series
    requests = [
        first,
        _request("m/a", [n + i * 0.5 for i in range(n)], [10_000 + i for i in range(n)], values[n:2 * n]),
        # a step going back in the middle: the whole request goes the per-message way, which rejects that point
        _request("m/a", [3 * n + i for i in range(n // 2)] + [3 * n] + [4 * n + i for i in range(n // 2)],
                 [20_000 + i for i in range(n + 1)], values[2 * n:3 * n + 1]),
        # a timestamp earlier than the series' last one
        _request("m/a", [6 * n + i for i in range(n)], [0] * n, values[:n]),
        _request("m/b", list(range(n)), list(range(n)), values[3 * n:]),  # a new series, created in bulk
        _request("m/b", list(range(n, 2 * n)), list(range(n, 2 * n)), values[3 * n:]),
        # a new series whose steps go back: per message, which creates it and rejects the point going back
        _request("m/c", [5, 6, 4] + list(range(7, n + 3)), list(range(n - 1)), values[:n - 1]),
    ]
    bulk = _replay(tmp_path / "bulk", requests, bulk=True)
    per_message = _replay(tmp_path / "per-message", requests, bulk=False)
    assert bulk[:3] == per_message[:3]
    points, attributes, errors, bulk_requests = bulk
    assert bulk_requests == 4 and per_message[3] == 0  # all but the 3rd, 4th and last went in bulk
    assert len(points) == n + n + n + n + n + (n - 2)
    assert {code for _, code in errors} == {IngestCode.SERIES_STEP_NON_INCREASING, IngestCode.SERIES_TIMESTAMP_DECREASING}
    assert [a[6] for a in attributes] == [3 * n, 2 * n, n - 2]  # point counts of m/a, m/b and m/c
