"""`nmig migrate` (export and import pipelined) against `nmig export` followed by `nmig import`, same run.

Serves the demo's sample legacy project (`--runs` runs with metrics of `--points` points) and two fresh 3.x
emulator folders, then times, each as a child process as a user would run them:

- `nmig export` then `nmig import` (the two-phase path);
- `nmig migrate` (each run imported as soon as its bundle is complete).

    python -m benchmarks.bench_migrate [--runs 12] [--points 20000] [--max-workers 4] [--latency-ms 20]
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


def _nmig(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nmig.cli", *args, "--quiet"], env=env, cwd=cwd, check=True)
    return time.perf_counter() - started


def _neptune3(data: Path, cwd: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    server = subprocess.Popen(
        [sys.executable, "-m", "nmig.cli", "emulate", "neptune3", "--data-dir", str(data)], stdout=subprocess.PIPE, text=True, cwd=cwd
    )
    assert server.stdout is not None
    ready = json.loads(server.stdout.readline())
    return server, {**(ready.get("env") or {}), "NEPTUNE_API_TOKEN": ready["api_token"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--points", type=int, default=20_000)
    parser.add_argument("--max-workers", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=20, help="added to every 2.x answer, as a remote service would")
    args = parser.parse_args()

    from nmig.emulators.sample import sample_fixture

    with tempfile.TemporaryDirectory(prefix="nmig-bench-migrate-") as tmp_name:
        tmp = Path(tmp_name)
        fixture = tmp / "fixture.json"
        fixture.write_text(json.dumps(sample_fixture(runs=args.runs, points=args.points)), encoding="utf-8")
        legacy = subprocess.Popen(
            [sys.executable, "-m", "nmig.cli", "emulate", "legacy", "--fixture", str(fixture), "--latency-ms", str(args.latency_ms)],
            stdout=subprocess.PIPE, text=True, cwd=tmp,
        )
        servers = [legacy]
        try:
            assert legacy.stdout is not None
            ready = json.loads(legacy.stdout.readline())
            base = {**os.environ, **(ready.get("env") or {})}
            workers = ["--max-workers", str(args.max_workers)]

            server, target = _neptune3(tmp / "two-phase", tmp)
            servers.append(server)
            export_s = _nmig(["export", "--project", "acme/vision", "--out", str(tmp / "b1"), *workers],
                             {**base, "NEPTUNE_API_TOKEN": ready["api_token"]}, tmp)
            import_s = _nmig(["import", str(tmp / "b1"), "--project", "demo/vision", *workers], {**base, **target}, tmp)

            server, target = _neptune3(tmp / "migrated", tmp)
            servers.append(server)
            migrate_s = _nmig(["migrate", "--from", "acme/vision", "--to", "demo/vision", "--out", str(tmp / "b2"), *workers],
                              {**base, **target, "NEPTUNE_LEGACY_API_TOKEN": ready["api_token"]}, tmp)
        finally:
            for process in servers:
                process.terminate()
                process.wait(timeout=30)

    two_phase = export_s + import_s
    print(f"{args.runs} runs x 2 metrics of {args.points:,} points, --max-workers {args.max_workers}, 2.x latency {args.latency_ms} ms")
    print(f"export then import: {two_phase:6.1f} s (export {export_s:.1f} s + import {import_s:.1f} s)")
    print(f"migrate:            {migrate_s:6.1f} s")
    print(f"ratio two-phase/migrate: {two_phase / migrate_s:.2f}x")


if __name__ == "__main__":
    main()
