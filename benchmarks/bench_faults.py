"""What 20% 5xx + 20% 429 on both services cost `nmig export`, `import` and `verify`, against the clean run
measured in the same process, with the results compared (goal: at most 3x the clean time, identical results).

The emulators serve on background threads of this process (loopback); each command runs through the CLI
in-process. A fault is decided per request before the handler runs (nmig.emulators.http.FaultPlan), so a
faulted request never half-applies; a 429 carries Retry-After: 1, as the emulators answer.

Every transient answer is asked again at once (nmig/transient.py); what is left is mostly the Retry-After of
the 429s, waited out as given on chains of requests that depend on each other (opening the 2.x project, a
run's creation before its data, a listing before the reads). `--throttle-rate 0` shows the 5xx alone.

    .venv/bin/python -m benchmarks.bench_faults [--runs 20] [--points 200000] [--fail-rate 0.2] [--throttle-rate 0.2]
    .venv/bin/python -m benchmarks.bench_faults --runs 40 --points 2400000   # the size the issue measured (2.4M points)
    .venv/bin/python -m benchmarks.bench_faults --runs 40 --points 2400000 --export-max-workers 8 --import-max-workers 4   # other defaults

A small project (a few seconds clean) pays mostly for chains of requests that depend on each other, each
waiting out a Retry-After one time in four or so: opening the 2.x project, a run's creation before its data.
That cost is fixed per chain, so the ratio depends on the project's size; both sizes are worth printing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_export import _fixture

PROJECT = "ws/faults"


def _fixture_for(runs: int, points: int) -> dict[str, Any]:
    fixture = _fixture("many", 50, runs)
    big = _fixture("big", points, 1)["projects"][0]["runs"][0]
    fixture["projects"][0]["runs"].append(big)
    fixture["workspace"] = "ws"
    fixture["projects"][0]["name"] = "faults"
    return fixture


def _cli(*args: str) -> tuple[float, int, str]:
    from click.testing import CliRunner

    from nmig.cli import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return time.perf_counter() - started, result.exit_code, result.output


def _digests(bundle: Path) -> dict[str, str]:
    """content_digest of every run, its manifest's source_url aside (it names the emulator's port, which
    differs between the two runs)."""
    import hashlib
    import json

    from nmig.schema import Bundle

    out = {}
    for entity in Bundle(bundle).entities("run"):
        manifest = {k: v for k, v in entity.manifest.items() if k not in ("exported_at", "source_url")}
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
        for relpath in sorted(p.relative_to(entity.path).as_posix() for p in entity.path.rglob("*") if p.is_file()):
            if relpath not in ("manifest.json", "COMPLETE"):
                digest.update(relpath.encode() + hashlib.sha256((entity.path / relpath).read_bytes()).digest())
        out[entity.sys_id] = digest.hexdigest()
    return out


def run(work: Path, runs: int, points: int, fail_rate: float, throttle_rate: float, workers: list[str],
        export_workers: list[str]) -> None:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.neptune3 import serve_neptune3

    fixture = _fixture_for(runs, points)
    figures: dict[str, dict[str, float]] = {"export": {}, "import": {}, "verify": {}}
    digests = {}
    for mode, (fail, throttle) in (("clean", (0.0, 0.0)), ("faults", (fail_rate, throttle_rate))):
        bundle = work / f"bundle-{mode}"
        with serve_legacy(fixture, fail_rate=fail, throttle_rate=throttle, seed=7) as legacy:
            elapsed, code, output = _cli("export", "--project", PROJECT, "--out", str(bundle), "--api-token",
                                         legacy.api_token, "--quiet", *export_workers)
        if code != 0:
            raise SystemExit(f"{mode} export failed: {output[-1500:]}")
        figures["export"][mode] = elapsed
        digests[mode] = _digests(bundle)
        with serve_neptune3(data_dir=work / f"n3-{mode}", fail_rate=fail, throttle_rate=throttle, seed=7) as target:
            os.environ.update(target.env or {})
            elapsed, code, output = _cli("import", str(bundle), "--project", "demo/faults", "--api-token",
                                         target.api_token, "--quiet", *workers)
            if code != 0:
                raise SystemExit(f"{mode} import failed: {output[-1500:]}")
            figures["import"][mode] = elapsed
            elapsed, code, output = _cli("verify", str(bundle), "--project", "demo/faults", "--api-token",
                                         target.api_token, "--quiet")
            if code != 0:
                raise SystemExit(f"{mode} verify found differences or failed: {output[-1500:]}")
            figures["verify"][mode] = elapsed
    same = digests["clean"] == digests["faults"]
    print(f"{runs} small runs + one {points:,}-point series; faults: {fail_rate:.0%} 5xx + {throttle_rate:.0%} 429 on both services")
    for command, times in figures.items():
        ratio = times["faults"] / times["clean"]
        print(f"  {command:<6}: clean {times['clean']:6.1f} s, with faults {times['faults']:6.1f} s = {ratio:4.1f}x  (goal <= 3x)")
    print(f"  exported bundles identical (content digests of every run): {same}; verify exit 0 on both targets")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--throttle-rate", type=float, default=0.2)
    parser.add_argument("--import-max-workers", type=int, default=None, help="nmig import --max-workers (default: its own)")
    parser.add_argument("--export-max-workers", type=int, default=None, help="nmig export --max-workers (default: its own)")
    args = parser.parse_args()
    workers = [] if args.import_max_workers is None else ["--max-workers", str(args.import_max_workers)]
    export_workers = [] if args.export_max_workers is None else ["--max-workers", str(args.export_max_workers)]
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with tempfile.TemporaryDirectory(prefix="nmig-bench-faults-") as tmp:
        run(Path(tmp), args.runs, args.points, args.fail_rate, args.throttle_rate, workers, export_workers)


if __name__ == "__main__":
    main()
