"""Speed and memory of `nmig verify` on one long float series, against the naive check in the same run.

Writes a bundle with one run holding a float series of `--points` points (hand-made with nmig.schema), starts
`nmig emulate neptune3` as its own process, imports the bundle with `nmig import`, then measures, each in a
fresh process that reports its own peak RSS:

- `nmig verify` (reads the target window by window with neptune-query's step_range, compares every point's
  step, value and timestamp; memory bounded by the window, not the series);
- the naive check: the whole series through one neptune-query `fetch_metrics` call and the whole bundle series
  through `nmig.schema.read_float_series`, compared as two pandas frames.

    python -m benchmarks.bench_verify [--points 2000000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = "demo/bench-verify"
T0_MS = 1_700_000_000_000

_VERIFY = """
import sys, time
from benchmarks.rss import peak_rss_bytes
from nmig.cli import main
started = time.perf_counter()
try:
    main(["verify", sys.argv[1], "--project", sys.argv[2], "--quiet"], standalone_mode=False)
finally:
    print("RESULT", time.perf_counter() - started, peak_rss_bytes() // 1024, flush=True)
"""

_NAIVE = """
import sys, time
import numpy as np
from benchmarks.rss import peak_rss_bytes
import neptune_query, neptune_query.runs as nq
from nmig.loopback import prepare_client_env
from nmig.schema import read_float_series
token = __import__("os").environ["NEPTUNE_API_TOKEN"]
prepare_client_env(token)
neptune_query.set_api_token(token)
started = time.perf_counter()
want = read_float_series(sys.argv[1], run_id="BIG-1", path="train/loss")
got = nq.fetch_metrics(project=sys.argv[2], runs=["BIG-1"], attributes=["train/loss"], include_time="absolute",
                       lineage_to_the_root=False).reset_index()
same = (np.array_equal(got["step"].to_numpy(), want["step"].to_numpy())
        and np.array_equal(got[("train/loss", "value")].to_numpy(), want["value"].to_numpy())
        and np.array_equal(got[("train/loss", "absolute_time")].astype("datetime64[ms, UTC]").astype("int64").to_numpy(),
                           want["timestamp"].astype("datetime64[ms, UTC]").astype("int64").to_numpy()))
print("RESULT", time.perf_counter() - started, peak_rss_bytes() // 1024, same, flush=True)
"""


def _bundle(out: Path, points: int) -> None:
    import numpy as np

    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": {"workspace": "legacy", "project": "bench-verify"}})
    with EntityWriter(out, "run", "BIG-1") as writer:
        writer.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.123Z")
        writer.add_atom("params/lr", "float", 0.001)
        page = 100_000
        for start in range(0, points, page):
            steps = np.arange(start, min(points, start + page), dtype=np.float64)
            writer.add_float_points("train/loss", steps, np.sin(steps / 1000.0), T0_MS + steps.astype(np.int64) * 10)


def _measure(code: str, bundle: Path, env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, extra) reported by a child process running `code`."""
    done = subprocess.run(
        [sys.executable, "-c", code, str(bundle), PROJECT],
        env={**env, "PYTHONPATH": str(REPO)},  # for benchmarks.rss; the child runs beside the bundle
        cwd=bundle.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"measurement failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    _, seconds, rss_kb, *extra = lines[-1].split()
    return float(seconds), int(rss_kb) / 1024, " ".join(extra) or f"exit {done.returncode}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=2_000_000, help="points of the float series")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nmig-bench-verify-") as tmp:
        bundle = Path(tmp) / "bundle"
        started = time.perf_counter()
        _bundle(bundle, args.points)
        print(f"bundle: {args.points:,} points written in {time.perf_counter() - started:.1f} s")
        server = subprocess.Popen(
            [sys.executable, "-m", "nmig.cli", "emulate", "neptune3", "--data-dir", str(Path(tmp) / "data")],
            stdout=subprocess.PIPE, text=True, cwd=tmp,
        )
        try:
            assert server.stdout is not None
            ready = json.loads(server.stdout.readline())
            env = {**os.environ, **(ready.get("env") or {}), "NEPTUNE_API_TOKEN": ready["api_token"]}
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "nmig.cli", "import", str(bundle), "--project", PROJECT, "--quiet"],
                env=env, cwd=tmp, check=True,
            )
            print(f"imported in {time.perf_counter() - started:.1f} s")
            verify_s, verify_mb, verify_exit = _measure(_VERIFY, bundle, env)
            naive_s, naive_mb, naive_same = _measure(_NAIVE, bundle, env)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"nmig verify:  {verify_s:6.1f} s ({args.points / verify_s:,.0f} points/s), peak RSS {verify_mb:,.0f} MB ({verify_exit})")
    print(f"naive check:  {naive_s:6.1f} s ({args.points / naive_s:,.0f} points/s), peak RSS {naive_mb:,.0f} MB (all equal: {naive_same})")
    print(f"ratio naive/verify: time {naive_s / verify_s:.2f}x, memory {naive_mb / verify_mb:.2f}x")


if __name__ == "__main__":
    main()
