"""Speed and memory of `nmig export` against the legacy emulator, next to the naive path measured in the same run.

The emulator runs in its own process (as a remote service would), serving a fixture built in memory. Scenarios:

- big:   one run with a 1,000,000-point float series;
- many:  1,000 small runs (20 atoms, 3 short series, 1 small file each);
- wide:  one run with 200 float series of 2,000 points each (not run by default);
- huge:  one run with a 10,000,000-point float series, exported by `nmig export` in a child process whose peak
         RSS is measured (os.wait4), to show memory bounded by page and row-group sizes, not series length.

The naive path is what a straightforward script does with the same client: one run at a time,
`init_run(mode="read-only")`, `fetch()` per atom, `fetch_values()` per series (1,000 points per request, a
pandas row per point), `download()` per file, and everything written into the bundle afterwards. Both paths
write the same bundle format through nmig.schema.

    python -m benchmarks.bench_export [--scenarios big,many,huge] [--points 1000000] [--runs 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.rss import peak_rss_bytes

REPO = Path(__file__).resolve().parents[1]
WORKSPACE, PROJECT = "bench", "export"
T0 = 1_700_000_000_000
WIDE_SERIES = 200


# ---- fixtures (built in the emulator's process; numpy arrays keep a 10M-point series cheap) ----------------


def _fixture(scenario: str, points: int, runs: int) -> dict[str, Any]:
    import numpy as np

    def series(n: int, seed: int) -> dict[str, Any]:
        rng = np.random.default_rng(seed)
        return {
            "type": "floatSeries",
            "steps": np.arange(n, dtype=np.float64),
            "values": rng.random(n),
            "timestamps": T0 + 10 * np.arange(n, dtype=np.int64),
        }

    if scenario in ("big", "huge"):
        run_list = [{"attributes": {"params/lr": {"type": "float", "value": 0.1}, "train/loss": series(points, 1)}}]
    elif scenario == "wide":
        attrs = {f"metrics/m{i:03d}": series(points, i) for i in range(WIDE_SERIES)}
        run_list = [{"attributes": {"params/lr": {"type": "float", "value": 0.1}, **attrs}}]
    else:
        run_list = []
        for n in range(runs):
            attrs: dict[str, Any] = {}
            for i in range(20):
                kind = ("float", "int", "string", "bool")[i % 4]
                value: Any = {"float": 0.5 * i + n, "int": i * n, "string": f"v{i}-{n}", "bool": i % 2 == 0}[kind]
                attrs[f"params/p{i:02d}"] = {"type": kind, "value": value}
            for s in range(3):
                short = series(50, n * 3 + s)
                attrs[f"metrics/m{s}"] = short
            attrs["artifacts/config"] = {"type": "file", "ext": "json", "content_text": json.dumps({"run": n}) * 20}
            run_list.append({"attributes": attrs})
    project = {"name": PROJECT, "key": "BEN", "visibility": "priv", "description": "benchmark", "runs": run_list}
    return {"fixture_version": 1, "workspace": WORKSPACE, "projects": [project]}


def _serve(scenario: str, points: int, runs: int) -> None:
    """Child mode: serve the scenario's fixture, print the ready line, wait for SIGTERM."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from nmig.emulators.legacy.server import serve_legacy

    # The float page handler formats with Arrow, whose first cast initialises its kernels (~0.1 s); a live
    # service did that long before anyone exports.
    pc.cast(pa.array([0.5]), pa.string())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with serve_legacy(_fixture(scenario, points, runs)) as info:
        print(info.to_json(), flush=True)
        while not stop.is_set():
            stop.wait(0.2)


@contextlib.contextmanager
def emulator(scenario: str, points: int, runs: int) -> Iterator[dict[str, Any]]:
    command = [sys.executable, "-m", "benchmarks.bench_export", "--serve", scenario]
    command += ["--points", str(points), "--runs", str(runs)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise SystemExit("the emulator did not start")
        info = json.loads(line)
        info["pid"] = process.pid
        yield info
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---- the two paths -----------------------------------------------------------------------------------------


def fast_export(info: dict[str, Any], out: Path, workers: int | None = None, **options: Any) -> float:
    """`nmig export` with its defaults (the default --max-workers unless `workers`), timed."""
    from nmig.exporter import ExportOptions, export_project

    if workers is not None:
        options["max_workers"] = workers
    started = time.perf_counter()
    result = export_project(
        ExportOptions(project=f"{WORKSPACE}/{PROJECT}", out=out, api_token=info["api_token"], quiet=True, **options)
    )
    elapsed = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"fast export failed: {result.failed[:3]}")
    return elapsed


def _walk(structure: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in structure.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _walk(value, path + "/")
        else:
            yield path, value


def naive_export(info: dict[str, Any], out: Path) -> float:
    """One run at a time through the client's public API, then written into the bundle."""
    import neptune
    from neptune.attributes import Boolean, Datetime, File, Float, FloatSeries, Integer, String, StringSeries
    from neptune.attributes.sets.string_set import StringSet

    from nmig.schema import EntityWriter, write_export_info

    started = time.perf_counter()
    project_name = f"{WORKSPACE}/{PROJECT}"
    project = neptune.init_project(project=project_name, api_token=info["api_token"], mode="read-only")
    ids = project.fetch_runs_table(columns=["sys/id"], progress_bar=False).to_pandas()["sys/id"].tolist()
    project.stop()
    write_export_info(out, {"source": {"workspace": WORKSPACE, "project": PROJECT}})
    scratch = Path(tempfile.mkdtemp(prefix="naive-"))
    kinds = ((Float, "float"), (Integer, "int"), (Boolean, "bool"), (String, "string"), (Datetime, "datetime"))
    try:
        for sys_id in ids:
            run = neptune.init_run(project=project_name, api_token=info["api_token"], with_id=sys_id, mode="read-only")
            fetched: list[tuple[str, str, Any]] = []
            for path, attribute in _walk(run.get_structure()):
                atom = next((name for cls, name in kinds if type(attribute) is cls), None)
                if atom:
                    fetched.append((path, atom, attribute.fetch()))
                elif isinstance(attribute, StringSet):
                    fetched.append((path, "stringSet", attribute.fetch()))
                elif isinstance(attribute, FloatSeries | StringSeries):
                    kind = "float" if isinstance(attribute, FloatSeries) else "string"
                    fetched.append((path, kind, attribute.fetch_values(progress_bar=False)))
                elif isinstance(attribute, File):
                    target = scratch / f"{len(fetched)}"
                    attribute.download(destination=str(target), progress_bar=False)
                    fetched.append((path, "file", target))
            run.stop()
            with EntityWriter(out, "run", sys_id) as writer:
                for path, kind, value in fetched:
                    if kind == "stringSet":
                        writer.add_string_set(path, value)
                    elif kind in ("float", "string") and hasattr(value, "columns"):
                        millis = [int(t.timestamp() * 1000) for t in value["timestamp"]]
                        add = writer.add_float_points if kind == "float" else writer.add_string_points
                        add(path, value["step"].tolist(), value["value"].tolist(), millis)
                    elif kind == "file":
                        writer.add_file(path, value, value.name, "")
                    else:
                        writer.add_atom(path, kind, value)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return time.perf_counter() - started


def peak_rss_of_export(info: dict[str, Any], out: Path) -> tuple[float, int]:
    """Run `nmig export` as a child process; its wall time and peak RSS in bytes.

    The peak is the kernel's high-water mark of the child's own address space (VmHWM), polled until it
    exits. (Not wait4's ru_maxrss: on Linux that also counts the parent's memory at fork time, so it would
    charge this benchmark's own size to the exporter.)"""
    env = {**os.environ, **info["env"], "NEPTUNE_API_TOKEN": info["api_token"]}
    command = [sys.executable, "-m", "nmig", "export", "--project", f"{WORKSPACE}/{PROJECT}", "--out", str(out)]
    started = time.perf_counter()
    process = subprocess.Popen([*command, "--quiet"], env=env, cwd=REPO)
    peak = 0
    while process.poll() is None:
        peak = max(peak, peak_rss_bytes(process.pid) or 0)
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"nmig export exited with {process.returncode}")
    return elapsed, peak


@contextlib.contextmanager
def _cpu(server_pid: int) -> Iterator[list[float]]:
    """CPU seconds used meanwhile by this process (all threads) and by the emulator process: less sensitive
    than wall time to other work on a shared machine."""
    import resource

    def server() -> float:
        fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def client() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    result = [0.0, 0.0]
    client0, server0 = client(), server()
    try:
        yield result
    finally:
        result[0], result[1] = client() - client0, server() - server0


def _cpu_text(cpu: list[float]) -> str:
    return f"CPU: client {cpu[0]:.2f} s, emulator {cpu[1]:.2f} s"


def _raw_page_floor(info: dict[str, Any], points: int) -> float:
    """Time to fetch every page of the big series as raw bytes (no decoding, no writing)."""
    from concurrent.futures import ThreadPoolExecutor

    from nmig.exporter.source import LegacySource

    with LegacySource(f"{WORKSPACE}/{PROJECT}", info["api_token"], quiet=True) as source:
        ref = source.list_entities("run", None, False)[0]

        def page(offset: int) -> int:
            body = source.call_raw(
                "leaderboard_client", "getFloatSeriesValues",
                experimentId=ref.container_id, attribute="train/loss", offset=offset, limit=10_000,
            )
            return len(body)

        started = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(page, range(0, points, 10_000)))
        return time.perf_counter() - started


def _warm_up(info: dict[str, Any]) -> None:
    """Import everything and open the project once, so neither path pays one-off costs the other does not
    (the client caches its swagger clients per token across init_* calls in a process)."""
    import neptune

    import nmig.exporter  # noqa: F401
    import nmig.schema  # noqa: F401

    neptune.init_project(project=f"{WORKSPACE}/{PROJECT}", api_token=info["api_token"], mode="read-only").stop()


# ---- main --------------------------------------------------------------------------------------------------


def _bench(scenario: str, points: int, runs: int, naive: bool) -> None:
    os.environ.setdefault("OAUTHLIB_INSECURE_TRANSPORT", "1")
    with emulator(scenario, points, runs) as info, tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        os.environ.update(info["env"])
        if scenario == "huge":
            elapsed, rss = peak_rss_of_export(info, Path(tmp) / "fast")
            verdict = "OK" if rss < 500 * 2**20 else "OVER"
            print(f"huge: {points:,}-point series exported in {elapsed:.1f} s by `nmig export`, "
                  f"peak RSS {rss / 2**20:.0f} MB (goal < 500 MB: {verdict})")
            return
        _warm_up(info)
        with _cpu(info["pid"]) as fast_cpu:
            fast = fast_export(info, Path(tmp) / "fast")
        if scenario == "many":
            # The ratio is at the default --max-workers (16 entities in parallel, suited to a remote service where
            # latency dominates); on loopback with 2 cores fewer threads contend less, shown for comparison.
            from nmig.exporter.export import DEFAULT_MAX_WORKERS

            workers = os.cpu_count() or 2
            with _cpu(info["pid"]) as tuned_cpu:
                tuned = fast_export(info, Path(tmp) / "fast-tuned", workers=workers)
            print(f"{scenario}: {runs:,} small runs: nmig export --max-workers {workers}: {tuned:.2f} s wall "
                  f"({_cpu_text(tuned_cpu)}); default --max-workers {DEFAULT_MAX_WORKERS}: {fast:.2f} s")
        if scenario == "big":
            # What the page size costs: the client's own 1,000 points per request only (no larger page tried),
            # and 10,000 (what nmig asked for before it followed the client; not known to be accepted).
            from nmig.exporter.entity import DEFAULT_PAGE_SIZE, LARGER_PAGE_SIZE

            with _cpu(info["pid"]) as only_client_cpu:
                only_client = fast_export(info, Path(tmp) / "fast-1000", larger_page_size=None)
            with _cpu(info["pid"]) as large_cpu:
                large = fast_export(info, Path(tmp) / "fast-10000", page_size=10_000, larger_page_size=None)
            print(f"{scenario}: page sizes: {DEFAULT_PAGE_SIZE:,} only (the client's own): {only_client:.2f} s "
                  f"({_cpu_text(only_client_cpu)}); {DEFAULT_PAGE_SIZE:,} then {LARGER_PAGE_SIZE:,} once the "
                  f"server answered one in full (the default): {fast:.2f} s ({_cpu_text(fast_cpu)}); 10,000 from "
                  f"the start: {large:.2f} s ({_cpu_text(large_cpu)})")
        what = {
            "big": f"1 run, {points:,}-point float series",
            "wide": f"1 run, {WIDE_SERIES} float series of {points:,} points",
        }.get(scenario, f"{runs:,} small runs")
        print(f"{scenario}: {what}: nmig export {fast:.2f} s wall ({_cpu_text(fast_cpu)})")
        if scenario == "big":
            floor = _raw_page_floor(info, points)
            print(f"{scenario}: the emulator alone: fetching the raw 10,000-point pages, 6 at a time, undecoded: "
                  f"{floor:.2f} s (the floor for any client of this server)")
        if not naive:
            return
        with _cpu(info["pid"]) as slow_cpu:
            slow = naive_export(info, Path(tmp) / "naive")
        goal = {"big": 10, "many": 5}.get(scenario)  # the goals; "wide" has none
        ratio = slow / fast
        cpu_ratio = sum(slow_cpu) / sum(fast_cpu)
        verdict = f" (goal >= {goal}x: {'OK' if ratio >= goal else 'BELOW'})" if goal else ""
        print(f"{scenario}: {what}: naive {slow:.2f} s wall ({_cpu_text(slow_cpu)})")
        print(f"{scenario}: ratio naive/nmig {ratio:.1f}x wall{verdict}, "
              f"{cpu_ratio:.1f}x in CPU seconds of client + emulator")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="big,many,huge")
    parser.add_argument("--points", type=int, default=None, help="series length (big: 1M, huge: 10M)")
    parser.add_argument("--runs", type=int, default=1_000, help="runs in the 'many' scenario")
    parser.add_argument("--no-naive", action="store_true", help="measure the fast path only")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.points or 0, args.runs)
        return
    for scenario in args.scenarios.split(","):
        points = args.points or {"big": 1_000_000, "huge": 10_000_000, "wide": 2_000}.get(scenario, 0)
        _bench(scenario, points, args.runs, naive=not args.no_naive)


if __name__ == "__main__":
    main()
