"""A project of many tiny runs (100,000 by default) against the legacy emulator: listing, a fresh export, and a
resume with 1% of the runs left, with the requests counted at the emulator.

    python -m benchmarks.bench_many_runs                        # 100,000 runs
    python -m benchmarks.bench_many_runs --runs 20000 --latency-ms 50

The emulator runs in this process on a thread (its per-operation request counter, `LegacyEmulator.stats`, is
read directly); `nmig export` runs as a child process, as a user runs it. Printed:

- the emulator's fixture load time and this process's peak RSS (the fixture loader must cope in bounded time
  and memory);
- listing: opening the project and listing every run through the exporter's LegacySource (requests by op);
- a fresh export of the whole project;
- a resume after 1% of the run folders were removed from the bundle (as a killed export leaves them missing):
  its time against the fresh export's, and the requests naming one run (attributes, series pages, files) made
  for the runs it skipped, per skipped run (0 is the goal: a complete run is skipped from the listing alone).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.rss import peak_rss_mb

REPO = Path(__file__).resolve().parents[1]
WORKSPACE, PROJECT, KEY = "acme", "many", "MNY"
T0_MS = 1_700_000_000_000
# Requests that name one run (the others are the session, the project and the listing).
PER_RUN_OPERATIONS = ("getExperimentAttributes", "getFloatSeriesValues", "getStringSeriesValues",
                      "getImageSeriesValues", "getImageSeriesValue", "downloadAttribute",
                      "prepareForDownloadFileSetAttributeZip", "getArtifactAttribute", "getExperiment")


def fixture(runs: int) -> dict[str, Any]:
    """`runs` tiny runs: two configs and a float series of 3 points each."""
    steps = [0.0, 1.0, 2.0]
    stamps = [T0_MS, T0_MS + 1000, T0_MS + 2000]
    return {
        "fixture_version": 1,
        "workspace": WORKSPACE,
        "projects": [{
            "name": PROJECT,
            "key": KEY,
            "runs": [
                {"attributes": {
                    "parameters/lr": {"type": "float", "value": i / 100_000},
                    "parameters/seed": {"type": "int", "value": i},
                    "metrics/loss": {"type": "floatSeries", "steps": steps, "values": [1.0, 0.5, 0.25], "timestamps": stamps},
                }}
                for i in range(runs)
            ],
        }],
    }


def per_run_requests(stats: Counter[str]) -> int:
    return sum(stats[name] for name in PER_RUN_OPERATIONS)


def export(env: dict[str, str], out: Path, workers: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmig", "export", "--project", f"{WORKSPACE}/{PROJECT}", "--out", str(out),
                    "--max-workers", str(workers), "--no-models", "--quiet"], env=env, cwd=REPO, check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--left", type=float, default=0.01, help="share of the runs the resume has to export")
    parser.add_argument("--latency-ms", type=int, default=0, help="added to every answer of the emulator")
    parser.add_argument("--max-workers", type=int, default=8)
    args = parser.parse_args()

    from nmig.emulators.http import FaultPlan
    from nmig.emulators.legacy.server import LegacyEmulator
    from nmig.schema.format import KIND_FOLDERS

    started = time.perf_counter()
    emulator = LegacyEmulator(fixture(args.runs))
    load_s = time.perf_counter() - started
    print(f"{args.runs:,} tiny runs; emulator fixture loaded in {load_s:.1f} s, peak RSS {peak_rss_mb()} MB; "
          f"{args.latency_ms} ms added to every answer", flush=True)

    with emulator.serve(FaultPlan(latency_ms=args.latency_ms)) as info, \
            tempfile.TemporaryDirectory(prefix="nmig-bench-many-") as tmp_name:
        tmp = Path(tmp_name)
        env = {**os.environ, **info.env, "NEPTUNE_API_TOKEN": info.api_token,
               "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        os.environ.update(info.env)

        # Listing, through the exporter's own LegacySource.
        from nmig.exporter.source import LegacySource

        before = Counter(emulator.stats)
        started = time.perf_counter()
        with LegacySource(f"{WORKSPACE}/{PROJECT}", info.api_token, quiet=True) as source:
            opened = time.perf_counter()
            refs = source.list_entities("run", None, False)
        listed = time.perf_counter()
        listing = Counter(emulator.stats) - before
        assert len(refs) == args.runs, len(refs)
        print(f"listing: {listed - opened:6.1f} s for {len(refs):,} runs (+{opened - started:.1f} s to open the project), "
              f"{listing['searchLeaderboardEntries']} listing requests", flush=True)

        out = tmp / "bundle"
        before = Counter(emulator.stats)
        fresh_s = export(env, out, args.max_workers)
        fresh = Counter(emulator.stats) - before
        exported_folders = sorted((out / KIND_FOLDERS["run"]).iterdir())
        assert len(exported_folders) == args.runs, len(exported_folders)
        per_run = per_run_requests(fresh) / args.runs
        print(f"fresh export: {fresh_s:6.1f} s ({args.runs / fresh_s:,.0f} runs/s), {per_run:.2f} requests per exported run", flush=True)

        # A resume with `left` of the runs missing from the bundle.
        removed = random.Random(13).sample(exported_folders, max(1, int(args.runs * args.left)))
        for folder in removed:
            shutil.rmtree(folder)
        before = Counter(emulator.stats)
        resume_s = export(env, out, args.max_workers)
        resumed = Counter(emulator.stats) - before
        skipped = args.runs - len(removed)
        extra = per_run_requests(resumed) - per_run * len(removed)
        assert len(list((out / KIND_FOLDERS["run"]).iterdir())) == args.runs
        print(f"resume with {len(removed):,} runs left ({args.left:.0%}): {resume_s:6.1f} s "
              f"= {resume_s / fresh_s:.1%} of the fresh export; {resumed['searchLeaderboardEntries']} listing requests; "
              f"requests naming a run: {per_run_requests(resumed):,} for {len(removed):,} exported "
              f"-> {max(extra, 0) / skipped:.4f} per skipped run ({skipped:,} skipped)", flush=True)


if __name__ == "__main__":
    main()
