"""The one walk over a run's planned series points (points.PlannedPoints), on a small bundle: the series the
plan writes, in batches, with the limits applied, the resume point honoured and columns read by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from importer_helpers import T0_MS, write_bundle

from nmig.importer.plan import plan_run
from nmig.importer.points import PlannedPoints
from nmig.schema import Bundle, path_runs


def _entity(tmp_path: Path):  # type: ignore[no-untyped-def]
    def fill(w) -> None:  # type: ignore[no-untyped-def]
        w.add_float_points("m/a", [0.0, 1.0, 1.0, 2.0, 3.0], [0.5, 1.5, 9.9, 2.5, 3.5], T0_MS + np.array([0, 10, 20, 5, 40]))
        w.add_float_points("m/b", np.arange(7.0), np.arange(7.0) * 2, T0_MS + np.arange(7))
        w.add_float_points("m/empty", [], [], [])
        w.add_string_points("s/log", [1.0, 2.0], ["x" * (1024 * 1024 + 3), None], [T0_MS, T0_MS + 1])

    write_bundle(tmp_path / "b", {"P-1": fill})
    return Bundle(tmp_path / "b").entity("run", "P-1")


def test_the_stream_applies_the_limits_per_series_across_batches(tmp_path: Path) -> None:
    entity = _entity(tmp_path)
    plan = plan_run(entity)
    stream = PlannedPoints(entity, plan, "float", ["value"], batch_rows=3)
    kept: dict[str, list[tuple[int, int, float]]] = {}
    starts: dict[str, list[int]] = {}
    for chunk in stream:
        values = chunk.column("value").to_numpy(zero_copy_only=False)
        index = np.flatnonzero(chunk.keep)
        kept.setdefault(chunk.item.target, []).extend(
            zip(chunk.micros[index].tolist(), (chunk.stamps[index] - T0_MS).tolist(), values[index].tolist(), strict=True)
        )
        starts.setdefault(chunk.item.legacy_path, []).append(chunk.start)
    # m/a: the second point at step 1 is dropped, the timestamp going back (5 after 10) is raised
    assert kept["m/a"] == [(0, 0, 0.5), (1_000_000, 10, 1.5), (2_000_000, 10, 2.5), (3_000_000, 40, 3.5)]
    assert [m for m, _, _ in kept["m/b"]] == [i * 1_000_000 for i in range(7)]
    assert starts == {"m/a": [0, 3], "m/b": [0, 1, 4]}  # 12 rows in batches of 3: m/a ends inside the second
    assert "m/empty" not in kept  # not planned: 3.x creates no series without points
    assert {(path, case) for path, case, _ in stream.adjustments()} == {("m/a", "step_collision"), ("m/a", "timestamp_decreasing")}
    assert stream.last_micros() == {"m/a": 3_000_000, "m/b": 6_000_000}


def test_the_stream_resumes_after_what_the_target_holds(tmp_path: Path) -> None:
    entity = _entity(tmp_path)
    plan = plan_run(entity)
    stream = PlannedPoints(entity, plan, "float", resume_after={"m/b": 4_000_000})
    sent = {chunk.item.target: chunk.micros[chunk.keep].tolist() for chunk in stream}
    assert sent["m/b"] == [5_000_000, 6_000_000] and len(sent["m/a"]) == 4


def test_string_values_as_3x_gets_them(tmp_path: Path) -> None:
    entity = _entity(tmp_path)
    stream = PlannedPoints(entity, plan_run(entity), "string", ["value"])
    (chunk,) = list(stream)
    values = chunk.strings(np.flatnonzero(chunk.keep))
    assert [len(v.encode()) for v in values] == [1024 * 1024, 0]
    assert [case for _, case, _ in stream.adjustments()] == ["string_value_too_long"]


def test_path_runs_of_plain_and_dictionary_columns() -> None:
    plain = pa.array(["a", "a", "b", "c", "c", "c"])
    assert list(path_runs(plain)) == [("a", 0, 2), ("b", 2, 3), ("c", 3, 6)]
    assert list(path_runs(plain.dictionary_encode())) == list(path_runs(plain))
    assert list(path_runs(pa.array([], pa.string()))) == []
