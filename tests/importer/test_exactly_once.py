"""Exactly once: `nmig import` killed with SIGKILL at several points, then re-run, leaves a target holding
every point, config and file once (checked with neptune-query); a 10% server fault rate gives the same target
as a clean import (with 5% throttling on top)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from importer_helpers import T0_MS, report, write_bundle

from nmig.emulators.http import EmulatorInfo

REPO = Path(__file__).resolve().parents[2]
POINTS = 150_000


def _run(points: int, seed: int) -> Callable[[Any], None]:
    def fill(w: Any) -> None:
        steps = np.arange(points, dtype=np.float64)
        w.add_atom("params/seed", "int", seed)
        w.add_string_set("sys/tags", [f"seed-{seed}"])
        w.add_float_points("train/loss", steps, np.cos(steps + seed), T0_MS + steps.astype(np.int64))
        w.add_float_points("train/acc", steps[::10], np.sin(steps[::10]), T0_MS + steps[::10].astype(np.int64))
        w.add_string_points("train/log", steps[:500], [f"{seed}:{i}" for i in range(500)], T0_MS + np.arange(500))
        w.add_file("model/weights", f"weights of {seed}".encode() * 100, name="weights", ext="bin")

    return fill


def _bundle(tmp_path: Path) -> Path:
    return write_bundle(tmp_path / "bundle", {"EO-1": _run(POINTS, 1), "EO-2": _run(POINTS, 2), "EO-3": _run(2_000, 3)})


def _finish(proc: subprocess.Popen[str], timeout: float = 240) -> str:
    """Wait for an import to end by itself (killed if it does not); its stderr."""
    try:
        return proc.communicate(timeout=timeout)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(bundle: Path, project: str, token: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "nmig", "import", str(bundle), "--project", project, "--api-token", token, "--quiet",
         "--max-workers", "1"],
        cwd=bundle.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _state(bundle: Path) -> dict[str, str]:
    files = list(bundle.glob("import-state.*.json"))
    if not files:
        return {}
    try:
        return {k: v["status"] for k, v in json.loads(files[0].read_text())["runs"].items()}
    except (ValueError, OSError):
        return {}


def _kill_when(proc: subprocess.Popen[str], bundle: Path, ready: Callable[[dict[str, str]], bool], delay: float) -> bool:
    """SIGKILL the import once `ready(state)` holds, after `delay` seconds; False if it finished first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready(_state(bundle)):
            time.sleep(delay)
            if proc.poll() is not None:
                return False
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the import never reached the kill point")


def _assert_exact_target(nq: Any, project: str, bundle: Path) -> None:
    from nmig.schema import read_float_series, read_string_series

    assert sorted(nq.list_runs(project=project)) == ["EO-1", "EO-2", "EO-3"]
    for run in ("EO-1", "EO-2", "EO-3"):
        for path in ("train/loss", "train/acc"):
            want = read_float_series(bundle, run_id=run, path=path)
            got = nq.fetch_metrics(project=project, runs=[run], attributes=[path]).reset_index()
            assert got["step"].tolist() == want["step"].tolist(), (run, path, len(got), len(want))
            assert np.allclose(got[path].to_numpy(), want["value"].to_numpy())
        logs = nq.fetch_series(project=project, runs=[run], attributes=["train/log"]).reset_index()
        want = read_string_series(bundle, run_id=run, path="train/log")
        assert logs["train/log"].tolist() == want["value"].tolist()
        row = nq.fetch_runs_table(project=project, runs=[run], attributes=["params/seed", "sys/tags"]).iloc[0]
        assert row["params/seed"] == int(run[-1]) and set(row["sys/tags"]) == {f"seed-{run[-1]}"}
        files = nq.fetch_runs_table(project=project, runs=[run], attributes=["model/weights"])
        folder = bundle.parent / "downloads" / run
        nq.download_files(files=files, destination=folder)
        contents = [p.read_bytes() for p in folder.rglob("*") if p.is_file()]
        assert contents == [f"weights of {run[-1]}".encode() * 100]


@pytest.mark.slow
def test_kill_minus_nine_at_several_points_then_rerun(neptune3: EmulatorInfo, tmp_path: Path, nq: Any) -> None:
    bundle = _bundle(tmp_path)
    project, token = "demo/exactly-once", neptune3.api_token
    kills = [
        (lambda s: s.get("EO-1") == "started", 0.0),  # right after the first run is marked started
        (lambda s: s.get("EO-1") == "started", 1.0),  # in the middle of the first run's series (resumed)
        (lambda s: s.get("EO-1") == "imported" and s.get("EO-2") == "started", 0.7),  # inside the second run
    ]
    killed = 0
    for ready, delay in kills:
        proc = _start(bundle, project, token)
        try:
            killed += _kill_when(proc, bundle, ready, delay)
        finally:
            _finish(proc, timeout=120)
    assert killed >= 2, "the import finished before most kill points; make the bundle bigger"
    final = _start(bundle, project, token)
    err = _finish(final)
    assert final.returncode == 0, err
    assert set(_state(bundle).values()) == {"imported"}
    assert report(bundle)["runs"]["failed"] == []
    _assert_exact_target(nq, project, bundle)
    assert not list(bundle.parent.glob(".import-state*.work/*")), "scratch left behind"


@pytest.mark.slow
def test_ten_percent_faults_give_the_clean_target(tmp_path: Path, nq: Any) -> None:
    import neptune_query

    from nmig.emulators.neptune3 import serve_neptune3

    bundle = write_bundle(tmp_path / "bundle", {"EO-1": _run(20_000, 1), "EO-2": _run(20_000, 2), "EO-3": _run(2_000, 3)})
    data = tmp_path / "faulty"
    with serve_neptune3(data_dir=data, fail_rate=0.1, throttle_rate=0.05, seed=7, multipart_part_size=256 * 1024) as faulty:
        proc = _start(bundle, "demo/faulty", faulty.api_token)
        err = _finish(proc)
        assert proc.returncode == 0, err
    # Read back without faults from the same data folder (the reader is not what is under test here).
    with serve_neptune3(data_dir=data) as calm:
        neptune_query.set_api_token(calm.api_token)
        _assert_exact_target(nq, "demo/faulty", bundle)
