"""Read speed of the Neptune 3.x emulator for neptune-query, on series of a million points.

Starts `nmig emulate neptune3` as its own process (as `nmig verify` would use it), writes one run over the
ingest API (a float series and a string series of `--points` points each, in large batches), then measures:

- fetch_metrics of the whole float series through the unmodified neptune_query (client included);
- fetch_series of the whole string series through neptune_query (server pages of 10,000 points);
- a project of many small runs (`--runs`, each with 10 configs and 5 metrics of 100 points): list_runs,
  fetch_runs_table of every attribute, fetch_metrics of every metric, as `nmig verify` reads a migrated project;
- the server's time for one 10,000-point page of the float series at the START and at the END of the series
  (afterStep paging), next to a naive page server measured on the same database file in the same run: load
  the whole series, sort, slice (what "serve a page" costs when pages are not range scans).

    python benchmarks/bench_neptune3_read.py [--points 1000000] [--runs 1000]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Step, UpdateRunSnapshot, UpdateRunSnapshots
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from nmig.emulators.harness import bearer_headers, emulator_process

PROJECT = "demo/bench-read"
PAGE = 10_000


def _client(url: str, api_token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=bearer_headers(url, api_token), timeout=300)


def _write(client: httpx.Client, points: int) -> None:
    client.post("/api/backend/v1/projects", json={"name": "bench-read", "organizationIdentifier": "demo"})
    create = RunOperation(project=PROJECT, run_id="big", create=CreateRun(family="big"))
    client.post("/api/client/v1/ingest", content=create.SerializeToString()).raise_for_status()
    per_request = 5_000
    for start in range(0, points, per_request):
        batch = UpdateRunSnapshots()
        for step in range(start, min(points, start + per_request)):
            snapshot = UpdateRunSnapshot(step=Step(whole=step, micro=0))
            snapshot.timestamp.seconds = 1_700_000_000 + step
            snapshot.append["metrics/loss"].float64 = step * 0.5
            snapshot.append["logs/line"].string = f"line {step}"
            batch.snapshots.append(snapshot)
        op = RunOperation(project=PROJECT, run_id="big", update_batch=batch)
        client.post("/api/client/v1/ingest", content=op.SerializeToString()).raise_for_status()


def _write_small_runs(client: httpx.Client, runs: int) -> None:
    for index in range(runs):
        run_id = f"small-{index:05d}"
        create = RunOperation(project=PROJECT, run_id=run_id, create=CreateRun(family=run_id))
        client.post("/api/client/v1/ingest", content=create.SerializeToString()).raise_for_status()
        batch = UpdateRunSnapshots()
        first = UpdateRunSnapshot(step=Step(whole=0, micro=0))
        first.timestamp.seconds = 1_700_000_000
        for c in range(10):
            first.assign[f"config/c{c}"].float64 = index + c / 10
        batch.snapshots.append(first)
        for step in range(1, 101):
            snapshot = UpdateRunSnapshot(step=Step(whole=step, micro=0))
            snapshot.timestamp.seconds = 1_700_000_000 + step
            for m in range(5):
                snapshot.append[f"metrics/m{m}"].float64 = step * 0.1 + m
            batch.snapshots.append(snapshot)
        op = RunOperation(project=PROJECT, run_id=run_id, update_batch=batch)
        client.post("/api/client/v1/ingest", content=op.SerializeToString()).raise_for_status()


def _timed(fetch: Callable[..., Any], rows: int, **query: Any) -> tuple[Any, float]:
    """What `fetch(project=PROJECT, **query)` returns and the seconds it took; it must return `rows` rows."""
    started = time.perf_counter()
    result = fetch(project=PROJECT, **query)
    seconds = time.perf_counter() - started
    assert len(result) == rows, f"{fetch.__name__} returned {len(result)} rows, not {rows}"
    return result, seconds


def _float_page(client: httpx.Client, after: float | None, limit: int = PAGE) -> float:
    request: dict[str, object] = {
        "requestId": "0",
        "series": {"holder": {"identifier": f"CUSTOM/{PROJECT}/big", "type": "experiment"},
                   "attribute": "metrics/loss", "lineage": "FULL", "lineageEntityType": "RUN", "includePreview": False},
    }
    if after is not None:
        request["afterStep"] = after
    body = {"requests": [request], "stepRange": {"from": None, "to": None}, "order": "descending",
            "perSeriesPointsLimit": limit}
    start = time.perf_counter()
    client.post("/api/leaderboard/v1/proto/attributes/series/float", json=body).raise_for_status()
    return time.perf_counter() - start


def _naive_page(db: Path, after: float | None) -> float:
    """Load the whole series, sort it, slice one page: the cost a page has when it is not a range scan."""
    start = time.perf_counter()
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = conn.execute(
        "SELECT p.step_whole, p.step_micro, p.ts_ms, p.value FROM points p JOIN attributes a USING (attr_pk)"
        " WHERE a.path = 'metrics/loss'"
    ).fetchall()
    rows.sort(reverse=True)
    if after is not None:
        rows = [row for row in rows if row[0] + row[1] / 1e6 < after]
    rows[:PAGE]
    conn.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=1_000_000, help="points in each of the two series")
    parser.add_argument("--runs", type=int, default=1_000, help="small runs in the many-runs scenario")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nmig-bench-n3r-") as tmp:
        data = Path(tmp) / "data"
        with emulator_process("neptune3", "--data-dir", str(data)) as server:
            url, token = server.info.url, server.info.api_token
            os.environ.update(server.info.env)
            with _client(url, token) as client:
                started = time.perf_counter()
                _write(client, args.points)
                print(f"written: 2 x {args.points:,} points in {time.perf_counter() - started:.1f} s")

                import neptune_query as nq
                import neptune_query.runs as nq_runs

                nq.set_api_token(token)
                _, metrics_s = _timed(nq_runs.fetch_metrics, args.points, runs=["big"], attributes=["metrics/loss"])
                _, series_s = _timed(nq_runs.fetch_series, args.points, runs=["big"], attributes=["logs/line"])

                _write_small_runs(client, args.runs)
                _, list_s = _timed(nq_runs.list_runs, args.runs, runs="^small-")
                table, table_s = _timed(nq_runs.fetch_runs_table, args.runs, runs="^small-", attributes=".*")
                _, small_s = _timed(nq_runs.fetch_metrics, args.runs * 100, runs="^small-", attributes="^metrics/")

                first = min(_float_page(client, None) for _ in range(3))
                last = min(_float_page(client, float(PAGE)) for _ in range(3))
                whole = _float_page(client, None, limit=args.points)
            db = data / "neptune3.sqlite3"
            naive_first = min(_naive_page(db, None) for _ in range(2))
            naive_last = min(_naive_page(db, float(PAGE)) for _ in range(2))

    print(f"fetch_metrics, {args.points:,} float points: {metrics_s:.2f} s -> {args.points / metrics_s:,.0f} points/s")
    print(f"  of which the server (one HTTP request for the whole float series, as the client makes it): "
          f"{whole:.2f} s -> {args.points / whole:,.0f} points/s")
    print(f"fetch_series, {args.points:,} string points: {series_s:.2f} s -> {args.points / series_s:,.0f} points/s")
    print(f"{args.runs:,} small runs: list_runs {list_s:.2f} s, fetch_runs_table (every attribute, "
          f"{table.shape[1]} columns) {table_s:.2f} s, fetch_metrics ({args.runs * 500:,} points) {small_s:.2f} s")
    print(f"one {PAGE:,}-point float page (HTTP round trip): first {first * 1000:.1f} ms, last {last * 1000:.1f} ms")
    print(f"naive page (load whole series, sort, slice):  first {naive_first * 1000:.1f} ms, "
          f"last {naive_last * 1000:.1f} ms")
    print(f"ratio naive/range-scan: first page {naive_first / first:.1f}x, last page {naive_last / last:.1f}x")


if __name__ == "__main__":
    main()
