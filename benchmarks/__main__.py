"""`python -m benchmarks [NAME ...]`: run the benchmarks one after another, each in its own process.

Each script starts the emulators it needs on loopback and stops them itself; the figures are printed as they
come. With no NAME, all of them run (allow tens of minutes on 2 cores).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ALL = (
    "bench_legacy_emulator",
    "bench_neptune3_ingest",
    "bench_neptune3_read",
    "bench_export",
    "bench_import",
    "bench_verify",
    "bench_migrate",
    "bench_latency",
    "bench_many_runs",
)


def main(argv: list[str]) -> int:
    names = argv or list(ALL)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(ALL)}", file=sys.stderr)
        return 2
    root = Path(__file__).resolve().parent.parent
    status = 0
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        status |= subprocess.run([sys.executable, "-m", f"benchmarks.{name}"], cwd=root, check=False).returncode
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
