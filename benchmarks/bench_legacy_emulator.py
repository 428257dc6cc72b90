"""The legacy (2.x) emulator is never the bottleneck: its own time against the `neptune` client's time.

    python -m benchmarks.bench_legacy_emulator                  # 1,000,000 points, both read paths
    python -m benchmarks.bench_legacy_emulator --points 10000000 --skip-naive

One run holds one float series of `--points` points (numpy arrays handed straight to the emulator, no JSON
file). The unmodified client reads it all back, page by page, over real HTTP on loopback:

- naive: `run["metrics/loss"].fetch_values()`, the public API, which pages by 1,000 points;
- large pages: the backend's `get_float_series_values(offset, limit=10_000)` (the exporter asks for 1,000, then
  5,000 once the server answered such a page in full; see docs/legacy-emulator.md);
- raw pages: the same operation through the client's authenticated session, parsing the JSON without
  bravado's models (as the client reads leaderboard pages).

For each path it prints the client's wall time, the server's own time (time inside its handlers: auth check,
slicing the arrays, formatting the JSON), the server's share of the client's time, and the speed-up of large
pages over the naive path measured in the same run. The server runs in its own (forked) process, as a real
service would be elsewhere, so server and client do not compete for one GIL.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from typing import Any

import numpy as np

from nmig.emulators.legacy import LegacyEmulator, legacy_fault_plan
from nmig.loopback import prepare_client_env

T0_MS = 1_700_000_000_000


def _fixture(points: int) -> dict[str, Any]:
    steps = np.arange(points, dtype=np.float64)
    series = {
        "type": "floatSeries",
        "steps": steps,
        "values": np.sin(steps / 1000.0),
        "timestamps": T0_MS + np.arange(points, dtype=np.int64) * 10,
    }
    return {
        "fixture_version": 1,
        "workspace": "bench",
        "projects": [{"name": "series", "key": "BEN", "runs": [{"attributes": {"metrics/loss": series}}]}],
    }


def _serve(points: int, conn: Any) -> None:
    """The server process: serve the fixture; answer "stats" with (busy seconds, series requests) until "stop"."""
    built = time.perf_counter()
    emulator = LegacyEmulator(_fixture(points))
    loaded = time.perf_counter() - built
    with emulator.serve(legacy_fault_plan()) as info:
        conn.send((info, loaded))
        while (message := conn.recv()) != "stop":
            conn.send(
                (emulator.busy_seconds, emulator.stats["getFloatSeriesValues"])
                if message == "stats"
                else None
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--skip-naive", action="store_true", help="only the large-page path")
    args = parser.parse_args()

    conn, child_conn = multiprocessing.Pipe()
    server = multiprocessing.get_context("fork").Process(
        target=_serve, args=(args.points, child_conn), daemon=True
    )
    server.start()
    try:
        info, loaded = conn.recv()
        print(f"fixture of {args.points:,} points loaded in {loaded:.2f} s")
        results = _read_back(info, conn, args.points, naive=not args.skip_naive)
    finally:
        conn.send("stop")
        server.join(timeout=30)
        if server.is_alive():
            server.terminate()
            server.join(timeout=10)

    print(
        f"{'path':34} {'requests':>8} {'client s':>9} {'server s':>9} {'server share':>12} {'points/s':>11}"
    )
    for name, (wall, busy, requests) in results.items():
        print(
            f"{name:34} {requests:8d} {wall:9.2f} {busy:9.2f} {busy / wall:12.1%} {args.points / wall:11,.0f}"
        )
    naive_wall = results.get("naive fetch_values (1,000/page)", (0.0,))[0]
    for name, (wall, *_) in results.items():
        if naive_wall and wall != naive_wall:
            print(f"{name} vs naive fetch_values: {naive_wall / wall:.2f}x faster end to end")


def _read_back(info: Any, conn: Any, points: int, *, naive: bool) -> dict[str, tuple[float, float, int]]:
    import neptune

    def measure(read: Any) -> tuple[float, float, int]:
        conn.send("stats")
        busy, requests = conn.recv()
        started = time.perf_counter()
        read()
        wall = time.perf_counter() - started
        conn.send("stats")
        busy_after, requests_after = conn.recv()
        return wall, busy_after - busy, requests_after - requests

    os.chdir(tempfile.mkdtemp(prefix="nmig-bench-legacy-"))  # the client writes a .neptune folder in the cwd
    prepare_client_env(info.api_token)
    results: dict[str, tuple[float, float, int]] = {}
    run = neptune.init_run(
        project="bench/series", with_id="BEN-1", api_token=info.api_token, mode="read-only"
    )
    try:
        if naive:

            def fetch_values() -> None:
                assert len(run["metrics/loss"].fetch_values(progress_bar=False)) == points

            results["naive fetch_values (1,000/page)"] = measure(fetch_values)

        def large_pages() -> None:
            backend, path, total = run._backend, ["metrics", "loss"], 0
            while total < points:
                page = backend.get_float_series_values(run._id, run.container_type, path, total, 10_000)
                assert page.values, "the server ended the series early"
                total += len(page.values)
            assert total == points

        results["backend pages of 10,000"] = measure(large_pages)

        def raw_pages() -> None:
            # The same operation through the client's own authenticated session, JSON parsed without bravado's
            # model building (how the client itself reads leaderboard pages).
            from bravado.client import construct_request
            from bravado.config import RequestConfig

            client = run._backend.leaderboard_client
            options = {"connect_timeout": 30, "timeout": 600, "headers": {}}
            total = 0
            while total < points:
                params = {
                    "experimentId": run._id,
                    "attribute": "metrics/loss",
                    "offset": total,
                    "limit": 10_000,
                }
                request = construct_request(client.api.getFloatSeriesValues, options, **params)
                future = client.swagger_spec.http_client.request(
                    request, operation=None, request_config=RequestConfig(options, True)
                )
                values = future.response().incoming_response.json()["values"]
                assert values, "the server ended the series early"
                total += len(values)
            assert total == points

        results["raw JSON pages of 10,000"] = measure(raw_pages)
    finally:
        run.stop()
    return results


if __name__ == "__main__":
    main()
