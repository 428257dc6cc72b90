"""`nmig migrate` against a naive copier over real latency: both emulators answer every request `--latency-ms`
late (50 ms by default, as a service in another region or behind a proxy would), measured in the same run.

    python -m benchmarks.bench_latency                                  # 40 runs x 3 series x 5,000 points
    python -m benchmarks.bench_latency --runs 40 --naive-runs 40 --max-workers 16
    python -m benchmarks.bench_latency --case long --points 1000000     # one run of 1,000,000 points

The latency is a sleep in each request's own server thread (nmig/emulators/http.py `FaultPlan.decide`, before
routing, so token exchange, client config and spec downloads wait too); the servers answer requests
concurrently (a thread per connection), so a slow answer never holds up another client's.

The naive copier is written here the way a one-shot copier is built with the public clients: a thread pool
over runs; per run, the neptune 1.x client opens the run read-only, reads every non-sys attribute (`fetch()`
for atoms and tags, `fetch_values()` per series, `download()` per file), and a neptune-scale `Run` gets
`log_configs`, `add_tags`, one `log_metrics` call per point and `assign_files` for the downloaded files, then
`close()` (which waits until everything is processed). `--naive-runs` below `--runs` measures the naive
copier on that many whole runs and scales its time linearly to the project (said plainly in the output);
by default it copies the whole project.

Peak RSS is the high-water mark (VmHWM) of the `nmig migrate` process and of its export child.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.rss import peak_rss_bytes

REPO = Path(__file__).resolve().parents[1]
WORKSPACE, PROJECT, KEY = "acme", "latency", "LAT"
T0_MS = 1_700_000_000_000


# ---- the project --------------------------------------------------------------------------------------


def fixture(runs: int, series: int, points: int, files: int, file_kb: int) -> dict[str, Any]:
    """`runs` runs, each with `series` float series of `points` points, a dozen configs, tags and `files`
    files of `file_kb` KB (fixture format v1)."""
    run_list = []
    steps = list(range(points))
    stamps = [T0_MS + i * 100 for i in steps]
    for r in range(runs):
        attributes: dict[str, Any] = {
            "sys/name": {"type": "string", "value": f"run-{r}"},
            "sys/tags": {"type": "stringSet", "values": ["latency", f"group-{r % 4}"]},
        }
        for c in range(10):
            attributes[f"parameters/p{c}"] = {"type": "float", "value": r + c / 8}
        attributes["parameters/optimizer"] = {"type": "string", "value": "adam"}
        attributes["parameters/epochs"] = {"type": "int", "value": 10 + r}
        for s in range(series):
            values = [((i * 7919 + r * 31 + s) % 10_007) / 10_007 for i in steps]
            attributes[f"metrics/m{s}"] = {"type": "floatSeries", "steps": steps, "values": values, "timestamps": stamps}
        for f in range(files):
            content = bytes((r * 13 + f * 7 + i) % 251 for i in range(file_kb * 1024))
            attributes[f"artifacts/file{f}"] = {"type": "file", "ext": "bin", "content_base64": base64.b64encode(content).decode()}
        run_list.append({"attributes": attributes})
    return {
        "fixture_version": 1,
        "workspace": WORKSPACE,
        "projects": [{"name": PROJECT, "key": KEY, "visibility": "priv", "runs": run_list}],
    }


# ---- the services -------------------------------------------------------------------------------------


@contextmanager
def emulator(kind: str, *options: str) -> Iterator[dict[str, Any]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "nmig", "emulate", kind, *options], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())
    finally:
        process.terminate()
        process.wait(timeout=60)


# ---- the naive copier ---------------------------------------------------------------------------------


def _leaves(structure: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, value in structure.items():
        path = f"{prefix}{name}"
        if isinstance(value, dict):
            yield from _leaves(value, path + "/")
        else:
            yield path, value


def naive_copy_run(sys_id: str, legacy_token: str, target_token: str, target_project: str, scratch: Path) -> int:
    """Copy one run the naive way; returns the number of series points logged."""
    import neptune
    from neptune.attributes.atoms.file import File as LegacyFile
    from neptune.attributes.series.float_series import FloatSeries
    from neptune.attributes.series.string_series import StringSeries
    from neptune.attributes.sets.string_set import StringSet
    from neptune_scale import Run

    source = neptune.init_run(
        project=f"{WORKSPACE}/{PROJECT}", with_id=sys_id, mode="read-only", api_token=legacy_token
    )
    points = 0
    try:
        target = Run(run_id=sys_id, project=target_project, api_token=target_token, enable_console_log_capture=False)
        try:
            for path, attribute in _leaves(source.get_structure()):
                if path.startswith("sys/"):
                    if path == "sys/tags" and isinstance(attribute, StringSet):
                        tags = sorted(attribute.fetch())
                        if tags:
                            target.add_tags(tags)
                    continue
                if isinstance(attribute, FloatSeries | StringSeries):
                    frame = attribute.fetch_values(include_timestamp=True, progress_bar=False)
                    log = target.log_metrics if isinstance(attribute, FloatSeries) else target.log_string_series
                    for step, value, stamp in zip(frame["step"], frame["value"], frame["timestamp"], strict=True):
                        log(data={path: value}, step=step, timestamp=stamp.to_pydatetime())
                        points += 1
                elif isinstance(attribute, LegacyFile):
                    local = scratch / sys_id / path
                    local.parent.mkdir(parents=True, exist_ok=True)
                    attribute.download(destination=str(local), progress_bar=False)
                    target.assign_files({path: str(local)})
                elif isinstance(attribute, StringSet):
                    target.log_configs({path: ",".join(sorted(attribute.fetch()))})
                elif hasattr(attribute, "fetch"):
                    target.log_configs({path: attribute.fetch()})
        finally:
            target.close()
    finally:
        source.stop()
    return points


def naive_copy(sys_ids: list[str], legacy_token: str, target_token: str, target_project: str, workers: int, scratch: Path) -> int:
    import logging

    from neptune_scale.projects import create_project

    logging.getLogger("neptune").setLevel(logging.WARNING)  # both clients' per-run info lines
    workspace, name = target_project.split("/")
    create_project(name, workspace=workspace, api_token=target_token, fail_if_exists=False)
    with ThreadPoolExecutor(workers) as pool:
        return sum(pool.map(lambda s: naive_copy_run(s, legacy_token, target_token, target_project, scratch), sys_ids))


# ---- nmig ---------------------------------------------------------------------------------------------


class TreePeak:
    """The largest VmHWM seen of a process and of its children, polled while it runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            for pid in [self.pid, *self._children(self.pid)]:
                peak = peak_rss_bytes(pid)
                if peak is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), peak)
            self._stop.wait(0.05)

    @staticmethod
    def _children(pid: int) -> list[int]:
        try:
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def stop(self) -> tuple[int, int]:
        """(peak MB of the process, peak MB of its largest child)."""
        self._stop.set()
        self._thread.join()
        own = self.peaks.get(self.pid, 0)
        child = max((v for k, v in self.peaks.items() if k != self.pid), default=0)
        return own // 2**20, child // 2**20


def nmig_migrate(env: dict[str, str], out: Path, target_project: str, workers: int) -> tuple[float, tuple[int, int]]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "nmig", "migrate", "--from", f"{WORKSPACE}/{PROJECT}", "--to", target_project,
         "--out", str(out), "--max-workers", str(workers), "--quiet"],
        env=env, cwd=REPO,
    )
    peak = TreePeak(process.pid)
    status = process.wait()
    took = time.perf_counter() - started
    rss = peak.stop()
    if status != 0:
        raise SystemExit(f"nmig migrate failed with exit status {status}")
    return took, rss


def nmig_verify(env: dict[str, str], out: Path, target_project: str) -> None:
    subprocess.run([sys.executable, "-m", "nmig", "verify", str(out), "--project", target_project, "--quiet"],
                   env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL)


# ---- the cases ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=("project", "long", "both"), default="project")
    parser.add_argument("--latency-ms", type=int, default=50, help="added to every answer of both emulators")
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--series", type=int, default=3)
    parser.add_argument("--points", type=int, default=5_000, help="points per series (the long case: of its one series)")
    parser.add_argument("--files", type=int, default=3, help="files per run")
    parser.add_argument("--file-kb", type=int, default=64)
    parser.add_argument("--naive-runs", type=int, default=None, help="copy only this many whole runs naively and scale (default: all)")
    parser.add_argument("--naive-workers", type=int, default=None, help="the naive copier's threads (default: --max-workers)")
    parser.add_argument("--max-workers", type=int, default=16, help="nmig migrate --max-workers")
    parser.add_argument("--verify", action="store_true", help="also run nmig verify on what nmig migrated")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")
    if args.case in ("project", "both"):
        project_case(args)
    if args.case in ("long", "both"):
        long_case(args)


def _servers(fx: dict[str, Any], tmp: Path, latency: int, name: str) -> Any:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(fx), encoding="utf-8")
    lat = ["--latency-ms", str(latency)]
    return (emulator("legacy", "--fixture", str(path), *lat),
            emulator("neptune3", "--data-dir", str(tmp / f"{name}-3x"), *lat))


def project_case(args: argparse.Namespace) -> None:
    fx = fixture(args.runs, args.series, args.points, args.files, args.file_kb)
    total_points = args.runs * args.series * args.points
    naive_runs = min(args.naive_runs or args.runs, args.runs)
    naive_workers = args.naive_workers or args.max_workers
    with tempfile.TemporaryDirectory(prefix="nmig-bench-latency-") as tmp_name:
        tmp = Path(tmp_name)
        legacy_cm, target_cm = _servers(fx, tmp, args.latency_ms, "project")
        with legacy_cm as legacy, target_cm as target:
            env = {**os.environ, **(legacy.get("env") or {}), **(target.get("env") or {}),
                   "NEPTUNE_LEGACY_API_TOKEN": legacy["api_token"], "NEPTUNE_API_TOKEN": target["api_token"]}
            nmig_s, (rss, export_rss) = nmig_migrate(env, tmp / "bundle", f"{target['workspace']}/nmig", args.max_workers)
            if args.verify:
                nmig_verify(env, tmp / "bundle", f"{target['workspace']}/nmig")
            os.environ.update(legacy.get("env") or {})
            sys_ids = [f"{KEY}-{i + 1}" for i in range(naive_runs)]
            started = time.perf_counter()
            naive_points = naive_copy(sys_ids, legacy["api_token"], target["api_token"], f"{target['workspace']}/naive",
                                      naive_workers, tmp / "naive-files")
            naive_s = time.perf_counter() - started
    assert naive_points == naive_runs * args.series * args.points, naive_points
    scaled = naive_s * args.runs / naive_runs
    print(f"{args.runs} runs x {args.series} series x {args.points:,} points + {args.files} files of {args.file_kb} KB each "
          f"({total_points:,} points), {args.latency_ms} ms added to every answer of both services")
    print(f"nmig migrate --max-workers {args.max_workers}: {nmig_s:7.1f} s  {total_points / nmig_s:10,.0f} points/s  "
          f"peak RSS {rss} MB (export child {export_rss} MB)" + ("  verify: OK" if args.verify else ""))
    if naive_runs == args.runs:
        print(f"naive copier, {naive_workers} threads: {naive_s:7.1f} s  {total_points / naive_s:10,.0f} points/s")
    else:
        print(f"naive copier, {naive_workers} threads: {naive_s:7.1f} s for {naive_runs} whole runs of {args.runs}, "
              f"SCALED linearly to {scaled:.1f} s for the project")
    print(f"ratio naive/nmig: {scaled / nmig_s:.1f}x")


def long_case(args: argparse.Namespace) -> None:
    points = args.points if args.points >= 100_000 else 1_000_000
    fx = fixture(1, 1, points, 0, 0)
    with tempfile.TemporaryDirectory(prefix="nmig-bench-latency-long-") as tmp_name:
        tmp = Path(tmp_name)
        legacy_cm, target_cm = _servers(fx, tmp, args.latency_ms, "long")
        with legacy_cm as legacy, target_cm as target:
            env = {**os.environ, **(legacy.get("env") or {}), **(target.get("env") or {}),
                   "NEPTUNE_LEGACY_API_TOKEN": legacy["api_token"], "NEPTUNE_API_TOKEN": target["api_token"]}
            took, (rss, export_rss) = nmig_migrate(env, tmp / "bundle", f"{target['workspace']}/long", args.max_workers)
            if args.verify:
                nmig_verify(env, tmp / "bundle", f"{target['workspace']}/long")
    print(f"one run of {points:,} points, {args.latency_ms} ms added to every answer of both services")
    print(f"nmig migrate: {took:7.1f} s  {points / took:10,.0f} points/s  peak RSS {rss} MB (export child {export_rss} MB)"
          + ("  verify: OK" if args.verify else ""))


if __name__ == "__main__":
    main()
