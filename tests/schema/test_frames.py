"""The pandas API returns the right frames, exact values included."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from nmig.schema import (
    BundleError,
    BundleWarning,
    EntityWriter,
    read_attributes,
    read_file,
    read_file_series,
    read_float_series,
    read_runs,
    read_string_series,
)


@pytest.fixture()
def two_runs(sample_bundle: Path) -> Path:
    with EntityWriter(sample_bundle, "run", "VIS-2") as run:
        run.add_atom("params/lr", "float", 0.2)
        run.add_float_points("metrics/loss", [0, 1], [9.0, 8.0], [10, 20])
        run.error("metrics/other", "could not be read")
    return sample_bundle


def test_read_runs(two_runs: Path, sample_constants: dict) -> None:
    runs = read_runs(two_runs).set_index("sys_id")
    assert list(runs.index) == ["VIS-1", "VIS-2"]
    assert runs.loc["VIS-1", "complete"] and not runs.loc["VIS-2", "complete"]
    assert "metrics/other: could not be read" in runs.loc["VIS-2", "incomplete_reason"]
    assert runs.loc["VIS-1", "params/lr"] == 0.1 and runs.loc["VIS-2", "params/lr"] == 0.2
    assert runs.loc["VIS-1", "params/big"] == sample_constants["big_int"]
    assert math.isnan(runs.loc["VIS-1", "params/nan"])
    assert runs.loc["VIS-1", "sys/tags"] == ["a", "b", "c"]
    assert runs.loc["VIS-1", "modification_time"] == pd.Timestamp("2024-05-01T12:00:00.123Z")
    assert runs.loc["VIS-1", "series_points"] == 3 + 1 + 2 + 2
    assert runs.loc["VIS-2", "errors"] == 1 and runs.loc["VIS-1", "skipped"] == 1
    assert read_runs(two_runs, kind="model").empty


def test_read_attributes(two_runs: Path) -> None:
    attrs = read_attributes(two_runs, "VIS-1").set_index("path")
    assert set(attrs["run_id"]) == {"VIS-1"}
    assert attrs.loc["params/ninf", "value"] == -math.inf
    assert attrs.loc["metrics/loss", "points"] == 3 and attrs.loc["metrics/loss", "last_step"] == 2.0
    assert attrs.loc["source/main", "name"] == "main" and attrs.loc["source/main", "file_size"] == 12
    assert [e["entry"] for e in attrs.loc["source/files", "detail"]] == ["../../x", "pkg/a.py"]
    assert attrs.loc["weird/thing", "skipped"] == "type newType is not known to nmig 0.1.0"
    assert len(read_attributes(two_runs)) == len(attrs) + 2  # VIS-2: params/lr, metrics/loss


def test_read_series(two_runs: Path) -> None:
    floats = read_float_series(two_runs)
    assert list(floats.columns) == ["run_id", "path", "step", "value", "timestamp"]
    assert len(floats) == 4 + 2
    loss = read_float_series(two_runs, path="metrics/loss")
    assert list(zip(loss["run_id"], loss["step"], strict=True)) == [
        ("VIS-1", 0.0), ("VIS-1", 1.0), ("VIS-1", 2.0), ("VIS-2", 0.0), ("VIS-2", 1.0)]
    assert math.isnan(loss["value"].iloc[1]) and loss["value"].iloc[2] == -math.inf
    assert str(loss["timestamp"].dt.tz) == "UTC"
    assert loss["timestamp"].iloc[3] == pd.Timestamp(10, unit="ms", tz="UTC")
    strings = read_string_series(two_runs, "VIS-1")
    assert list(strings["value"]) == ["first", "second"]
    assert read_string_series(two_runs, "VIS-2").empty
    files = read_file_series(two_runs, "VIS-1", path=["images/sample"])
    assert list(files["name"]) == ["img-3", "img-4"]


def test_read_file(two_runs: Path) -> None:
    assert read_file(two_runs, "VIS-1", "source/main") == b"print('hi')\n"
    assert read_file(two_runs, "VIS-1", "source/files", entry="../../x") == b"hostile"
    assert read_file(two_runs, "VIS-1", "images/sample", step=4) == b"\x89PNG-4"
    with pytest.raises(BundleError, match="name the entry"):
        read_file(two_runs, "VIS-1", "source/files")
    with pytest.raises(BundleError, match="no such attribute"):
        read_file(two_runs, "VIS-1", "nope")
    with pytest.raises(BundleError, match="not a file"):
        read_file(two_runs, "VIS-1", "params/lr")
    with pytest.raises(BundleError, match="no run"):
        read_file(two_runs, "VIS-9", "source/main")


def test_damaged_run_raises_alone_and_is_left_out_with_a_warning_among_all(two_runs: Path) -> None:
    parquet = two_runs / "runs" / "VIS-1" / "series_float.parquet"
    parquet.write_bytes(parquet.read_bytes().replace(b"metrics/loss", b"metrics/lose"))
    with pytest.raises(BundleError, match="checksum"):
        read_float_series(two_runs, "VIS-1")
    with pytest.warns(BundleWarning, match="VIS-1: series_float.parquet does not match its checksum"):
        frame = read_float_series(two_runs)
    assert set(frame["run_id"]) == {"VIS-2"} and len(frame) == 2
    (two_runs / "runs" / "VIS-2" / "manifest.json").write_text("{broken")
    with pytest.warns(BundleWarning, match="run VIS-2: manifest.json is unreadable"):
        attrs = read_attributes(two_runs)
    assert set(attrs["run_id"]) == {"VIS-1"}
    runs = read_runs(two_runs).set_index("sys_id")
    assert not runs.loc["VIS-2", "complete"] and "unreadable" in runs.loc["VIS-2", "incomplete_reason"]


def test_attribute_named_like_a_fixed_column_is_kept(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_atom("complete", "string", "user value")
    runs = read_runs(bundle_dir)
    assert bool(runs.loc[0, "complete"]) is True and runs.loc[0, "complete (attribute)"] == "user value"
