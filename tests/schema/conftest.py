"""Fixtures for the bundle-format tests: a bundle holding one run with every attribute type."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nmig.schema import EntityWriter, write_export_info

BIG_INT = 2**63 + 12345  # beyond int64 and beyond exact float64: must survive as an int
MOD_TIME_MS = 1714564800123  # 2024-05-01T12:00:00.123Z


def write_sample_run(bundle: Path, sys_id: str = "VIS-1") -> None:
    """One run with every legacy attribute type, written the way the exporter writes it."""
    with EntityWriter(bundle, "run", sys_id) as run:
        run.set_info(custom_run_id="custom-1", source_url="https://legacy/ws/proj/e/" + sys_id,
                     modification_time=MOD_TIME_MS)
        run.add_atom("params/lr", "float", 0.1)
        run.add_atom("params/nan", "float", math.nan)
        run.add_atom("params/inf", "float", math.inf)
        run.add_atom("params/ninf", "float", -math.inf)
        run.add_atom("params/big", "int", BIG_INT)
        run.add_atom("params/neg", "int", -7)
        run.add_atom("params/flag", "bool", False)
        run.add_atom("params/name", "string", "naïve ✓")
        run.add_atom("sys/creation_time", "datetime", MOD_TIME_MS)
        run.add_string_set("sys/tags", ["b", "a", "c"])
        run.add_float_points("metrics/loss", [0, 1], [1.5, math.nan], [1000, 2000])
        run.add_float_points("metrics/acc", [0], [math.inf], [1500])
        run.add_float_points("metrics/loss", [2], [-math.inf], [3000])
        run.add_string_points("logs/out", [0, 1], ["first", "second"], [1000, 1001])
        run.add_file("source/main", b"print('hi')\n", name="main", ext="py")
        run.add_fileset("source/files", [("../../x", io.BytesIO(b"hostile")), ("pkg/a.py", b"a = 1\n")])
        run.add_file_series_point("images/sample", 3, 4000, "img-3", "third", b"\x89PNG-3", "png")
        run.add_file_series_point("images/sample", 4, 5000, "img-4", None, b"\x89PNG-4", "png")
        run.add_artifact("data/ds", "ab" * 32, [{"filePath": "s3://b/k", "fileHash": "cd" * 32, "type": "S3",
                                               "size": 10, "metadata": {"last_modified": "x"}}])
        run.add_raw("source/git", "gitRef", {"commit": {"commitId": "abc"}, "repositoryDirty": False})
        run.add_raw("sys/state", "experimentState", "idle")
        run.declare_series("metrics/empty", "floatSeries")
        run.skip("weird/thing", "newType", "type newType is not known to nmig 0.1.0")


@pytest.fixture()
def bundle_dir(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    write_export_info(root, {"source": {"workspace": "ws", "project": "proj"}, "selection": {}})
    return root


@pytest.fixture()
def sample_bundle(bundle_dir: Path) -> Path:
    write_sample_run(bundle_dir)
    return bundle_dir


@pytest.fixture()
def kolkata_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run a test with the process in a non-UTC, non-whole-hour timezone: nothing may go through local time."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture()
def sample_constants() -> dict[str, int]:
    return {"big_int": BIG_INT, "mod_time_ms": MOD_TIME_MS}


@pytest.fixture()
def write_run():
    """The sample-run writer, for tests that need several runs or several bundles."""
    return write_sample_run
