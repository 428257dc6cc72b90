"""`nmig import` against the naive replay, measured in the same run, against the 3.x emulator.

    python -m benchmarks.bench_import                   # both cases, default sizes
    python -m benchmarks.bench_import --case series --points 1000000 --naive-points 100000
    python -m benchmarks.bench_import --case small --runs 1000 --naive-runs 20
    python -m benchmarks.bench_import --case memory --points 10000000

The emulator runs in its own process (as a real service would be elsewhere). "Naive" is what a one-shot
copier does with neptune-scale's public API: one `Run` (and sync process) per run, one `log_metrics` /
`log_string_series` call per point and one `log_configs` call per attribute, then `wait_for_processing`.
The naive path is linear in points and runs, so it is measured on a sample (`--naive-points`,
`--naive-runs`) and its rate compared with nmig's rate on the full size; pass the full size to measure
it whole. Figures are end to end: until the service confirmed everything processed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks.rss import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
T0_MS = 1_700_000_000_000


@contextmanager
def emulator(data_dir: Path) -> Iterator[dict]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nmig", "emulate", "neptune3", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        os.environ.update(info.get("env") or {})
        yield info
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def series_bundle(out: Path, points: int) -> None:
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": {"workspace": "legacy", "project": "bench"}})
    with EntityWriter(out, "run", "BEN-1") as run:
        run.add_atom("sys/id", "string", "BEN-1")
        run.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.000Z")
        page = 200_000
        for start in range(0, points, page):
            steps = np.arange(start, min(points, start + page), dtype=np.float64)
            run.add_float_points("train/loss", steps, np.sin(steps), T0_MS + steps.astype(np.int64) * 10)


def small_runs_bundle(out: Path, runs: int) -> None:
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": {"workspace": "legacy", "project": "bench"}})
    steps = np.arange(50, dtype=np.float64)
    for index in range(runs):
        sys_id = f"SML-{index + 1}"
        with EntityWriter(out, "run", sys_id) as run:
            run.add_atom("sys/id", "string", sys_id)
            run.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.000Z")
            for c in range(20):
                run.add_atom(f"params/p{c}", "float", c * 0.5 + index)
            run.add_float_points("train/loss", steps, steps * 0.1, T0_MS + steps.astype(np.int64))
            run.add_float_points("train/acc", steps, steps * 0.01, T0_MS + steps.astype(np.int64))
            run.add_string_points("train/log", steps, [f"line {int(s)}" for s in steps], T0_MS + steps.astype(np.int64))
            run.add_file("model/summary", f"run {index}".encode() * 20, name="summary", ext="txt")


def nmig_import(bundle: Path, project: str, token: str, workers: int) -> float:
    from nmig.importer.runner import ImportOptions, run_import

    start = time.perf_counter()
    result = run_import(ImportOptions(bundle_dir=bundle, project=project, api_token=token, quiet=True, max_workers=workers))
    elapsed = time.perf_counter() - start
    assert not result.failed and not result.refused, (result.failed, result.refused)
    return elapsed


def create_naive_project(project: str, token: str) -> None:
    from neptune_scale.projects import create_project

    create_project(project, api_token=token)


def count_points(project: str, token: str, run_id: str, path: str) -> int:
    """Points the target holds: proves a naive replay really arrived before its time is used."""
    import neptune_query
    from neptune_query import runs as nq_runs

    neptune_query.set_api_token(token)
    return len(nq_runs.fetch_metrics(project=project, runs=[run_id], attributes=[path], lineage_to_the_root=False))


def naive_run(project: str, token: str, run_id: str, series: dict[str, list[float]], strings: dict[str, list[str]],
              configs: dict[str, float], files: dict[str, bytes], log_dir: Path) -> None:
    import datetime as dt

    from neptune_scale import Run

    with Run(run_id=run_id, project=project, api_token=token, log_directory=log_dir,
             enable_console_log_capture=False, source_tracking_config=None) as run:
        for path, value in configs.items():
            run.log_configs({path: value})
        for path, values in series.items():
            for step, value in enumerate(values):
                run.log_metrics({path: value}, step=step, timestamp=dt.datetime.fromtimestamp((T0_MS + step) / 1000, dt.timezone.utc))
        for path, values in strings.items():
            for step, value in enumerate(values):
                run.log_string_series({path: value}, step=step, timestamp=dt.datetime.fromtimestamp((T0_MS + step) / 1000, dt.timezone.utc))
        if files:
            run.assign_files(files)
        run.wait_for_processing(verbose=False)


def case_series(points: int, naive_points: int, work: Path) -> None:
    bundle = work / "series-bundle"
    t = time.perf_counter()
    series_bundle(bundle, points)
    print(f"bundle with one {points:,}-point float series written in {time.perf_counter() - t:.1f} s")
    with emulator(work / "emu-series") as info:
        fast = nmig_import(bundle, "demo/bench-series", info["api_token"], workers=1)
        assert count_points("demo/bench-series", info["api_token"], "BEN-1", "train/loss") == points
        create_naive_project("demo/bench-naive", info["api_token"])
        start = time.perf_counter()
        values = np.sin(np.arange(naive_points)).tolist()
        naive_run("demo/bench-naive", info["api_token"], "NAIVE-1", {"train/loss": values}, {}, {}, {}, work / "ns")
        naive = time.perf_counter() - start
        assert count_points("demo/bench-naive", info["api_token"], "NAIVE-1", "train/loss") == naive_points
    fast_rate, naive_rate = points / fast, naive_points / naive
    print(f"nmig import : {points:>10,} points in {fast:7.1f} s = {fast_rate:>10,.0f} points/s")
    print(f"naive replay: {naive_points:>10,} points in {naive:7.1f} s = {naive_rate:>10,.0f} points/s")
    print(f"speed-up (points/s): {fast_rate / naive_rate:.1f}x  (goal >= 25x)")


def case_small(runs: int, naive_runs: int, workers: int, work: Path) -> None:
    bundle = work / "small-bundle"
    small_runs_bundle(bundle, runs)
    with emulator(work / "emu-small") as info:
        fast = nmig_import(bundle, "demo/bench-small", info["api_token"], workers=workers)
        assert count_points("demo/bench-small", info["api_token"], f"SML-{runs}", "train/loss") == 50
        create_naive_project("demo/bench-small-naive", info["api_token"])
        steps = np.arange(50, dtype=np.float64)
        start = time.perf_counter()
        for index in range(naive_runs):
            naive_run(
                "demo/bench-small-naive", info["api_token"], f"NAIVE-{index}",
                {"train/loss": (steps * 0.1).tolist(), "train/acc": (steps * 0.01).tolist()},
                {"train/log": [f"line {int(s)}" for s in steps]},
                {f"params/p{c}": c * 0.5 for c in range(20)},
                {"model/summary": b"run" * 20},
                work / "ns",
            )
        naive = time.perf_counter() - start
        assert count_points("demo/bench-small-naive", info["api_token"], f"NAIVE-{naive_runs - 1}", "train/loss") == 50
    fast_rate, naive_rate = runs / fast, naive_runs / naive
    print(f"nmig import (--max-workers {workers}): {runs:>5} small runs in {fast:7.1f} s = {fast_rate:6.2f} runs/s")
    print(f"naive, one run at a time        : {naive_runs:>5} small runs in {naive:7.1f} s = {naive_rate:6.2f} runs/s")
    print(f"speed-up (runs/s): {fast_rate / naive_rate:.1f}x  (goal >= 5x)")


_MEMORY_CHILD = """
import sys, time
from pathlib import Path
from benchmarks.rss import peak_rss_mb
from nmig.importer.runner import ImportOptions, run_import
start = time.perf_counter()
result = run_import(ImportOptions(bundle_dir=Path(sys.argv[1]), project="demo/bench-memory", api_token=sys.argv[2], quiet=True))
assert not result.failed, result.failed
print(time.perf_counter() - start, peak_rss_mb())
"""


def case_memory(points: int, work: Path) -> None:
    bundle = work / "memory-bundle"
    series_bundle(bundle, points)
    with emulator(work / "emu-memory") as info:
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(bundle), info["api_token"]],
                             capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise SystemExit(f"import failed: {out.stderr[-2000:]}")
    elapsed, peak_mb = out.stdout.split()
    print(f"nmig import of one {points:,}-point series: {float(elapsed):.1f} s, peak RSS {peak_mb} MB (goal < 500 MB)")


def main() -> None:
    os.environ.setdefault("NEPTUNE_LOGGER_LEVEL", "error")  # the naive runs' sync processes log every step
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=["series", "small", "memory", "all"], default="all")
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--naive-points", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--naive-runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="nmig-bench-import-"))
    try:
        if args.case in ("series", "all"):
            case_series(args.points, args.naive_points, work)
        if args.case in ("small", "all"):
            case_small(args.runs, args.naive_runs, args.workers, work)
        if args.case == "memory":
            case_memory(args.points, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"benchmark process peak RSS: {peak_rss_mb()} MB")


if __name__ == "__main__":
    main()
