"""Ingest speed of the Neptune 3.x emulator: metric points per second while a client writes.

Starts `nmig emulate neptune3` as its own process (as an import would use it), then a client process posts
well-formed RunOperations over HTTP with the emulator's auth, the way neptune-scale's sync process does:

- batched: each RunOperation carries many snapshots (steps) with many metrics each, as the importer sends;
- naive: one snapshot with a single point per RunOperation, as an unbatched writer would send;
- client: the unmodified neptune_scale.Run logging metrics (its own serialization, local queue and sync
  process included), for comparison: when the raw ingest rate is well above it, the emulator is not what
  limits an import.

The time covers HTTP, protobuf parsing, validation and the durable SQLite commit of every request (each
request is acknowledged only after its transaction commits). Payloads are built before the clock starts.

    python benchmarks/bench_neptune3_ingest.py [--points 600000] [--metrics 100] [--steps-per-request 100]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Run as CreateRun
from neptune_api.proto.neptune_pb.ingest.v1.common_pb2 import Step, UpdateRunSnapshot, UpdateRunSnapshots
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from nmig.emulators.harness import bearer_headers, emulator_process

PROJECT = "demo/bench"
TARGET_POINTS_PER_S = 300_000


def _client(url: str, api_token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers=bearer_headers(url, api_token), timeout=120)


def _operations(run_id: str, metrics: int, steps_per_request: int, points: int) -> list[bytes]:
    """Serialized RunOperations carrying `points` metric points, `metrics` per step."""
    payloads: list[bytes] = []
    step = 0
    names = [f"metrics/m{i:03d}" for i in range(metrics)]
    ts_seconds = 1_700_000_000
    while step * metrics < points:
        batch = UpdateRunSnapshots()
        for _ in range(steps_per_request):
            if step * metrics >= points:
                break
            snapshot = UpdateRunSnapshot(step=Step(whole=step, micro=0))
            snapshot.timestamp.seconds = ts_seconds + step
            for i, name in enumerate(names):
                snapshot.append[name].float64 = step * 0.001 + i
            batch.snapshots.append(snapshot)
            step += 1
        payloads.append(RunOperation(project=PROJECT, run_id=run_id, update_batch=batch).SerializeToString())
    return payloads


def _create(client: httpx.Client, run_id: str) -> None:
    op = RunOperation(project=PROJECT, run_id=run_id, create=CreateRun(family=run_id))
    client.post("/api/client/v1/ingest", content=op.SerializeToString()).raise_for_status()


def _send_all(client: httpx.Client, payloads: list[bytes]) -> None:
    for payload in payloads:
        client.post("/api/client/v1/ingest", content=payload).raise_for_status()


def _timed(url: str, token: str, runs: list[tuple[str, list[bytes]]]) -> float:
    """Send each run's payloads from its own client thread (several writers at once); seconds taken."""
    clients = [_client(url, token) for _ in runs]
    for client, (run_id, _) in zip(clients, runs, strict=True):
        _create(client, run_id)
    threads = [
        threading.Thread(target=_send_all, args=(client, payloads))
        for client, (_, payloads) in zip(clients, runs, strict=True)
    ]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for client in clients:
        client.close()
    return elapsed


def _through_client(token: str, metrics: int, points: int, log_dir: Path) -> float:
    """Seconds for neptune_scale.Run to log `points` metric points and have them all processed."""
    from neptune_scale import Run

    names = [f"metrics/m{i:03d}" for i in range(metrics)]
    start = time.perf_counter()
    run = Run(project=PROJECT, api_token=token, run_id="client", log_directory=log_dir, source_tracking_config=None,
              enable_console_log_capture=False)
    for step in range(points // metrics):
        run.log_metrics({name: step * 0.5 + i for i, name in enumerate(names)}, step=step)
    run.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=600_000, help="metric points in the batched phase")
    parser.add_argument("--metrics", type=int, default=100, help="metrics logged at each step")
    parser.add_argument("--steps-per-request", type=int, default=100, help="snapshots per RunOperation (batched)")
    parser.add_argument("--writers", type=int, default=2, help="concurrent client connections (one run each)")
    parser.add_argument("--naive-points", type=int, default=3_000, help="points in the naive phase")
    parser.add_argument("--client-points", type=int, default=200_000, help="points logged through neptune_scale.Run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nmig-bench-n3-") as tmp:
        with emulator_process("neptune3", "--data-dir", str(Path(tmp) / "data")) as server:
            url, token = server.info.url, server.info.api_token
            with _client(url, token) as admin:
                admin.post("/api/backend/v1/projects", json={"name": "bench", "organizationIdentifier": "demo"}).raise_for_status()

            per_writer = args.points // args.writers
            batched = [
                (f"batched-{w}", _operations(f"batched-{w}", args.metrics, args.steps_per_request, per_writer))
                for w in range(args.writers)
            ]
            total_points = per_writer * args.writers
            requests = sum(len(p) for _, p in batched)
            batched_s = _timed(url, token, batched)

            naive = [("naive", _operations("naive", 1, 1, args.naive_points))]
            naive_s = _timed(url, token, naive)
            client_s = _through_client(token, args.metrics, args.client_points, Path(tmp) / "client")

        stored = sqlite3.connect(Path(tmp) / "data" / "neptune3.sqlite3").execute(
            "SELECT COUNT(*) FROM points"
        ).fetchone()[0]

    batched_rate = total_points / batched_s
    naive_rate = args.naive_points / naive_s
    print(f"batched: {total_points:,} points in {requests} requests from {args.writers} writers, "
          f"{batched_s:.2f} s -> {batched_rate:,.0f} points/s")
    print(f"naive:   {args.naive_points:,} points, one per request, {naive_s:.2f} s -> {naive_rate:,.0f} points/s")
    print(f"ratio batched/naive: {batched_rate / naive_rate:.1f}x")
    client_rate = args.client_points / client_s
    print(f"client:  {args.client_points:,} points through neptune_scale.Run, {client_s:.2f} s -> {client_rate:,.0f} points/s"
          f" (raw ingest is {batched_rate / client_rate:.1f}x faster)")
    expected = total_points + args.naive_points + args.client_points
    print(f"points stored: {stored:,} (expected {expected:,})")
    print(f"target {TARGET_POINTS_PER_S:,} points/s: {'met' if batched_rate >= TARGET_POINTS_PER_S else 'NOT met'}")
    if stored != expected:
        sys.exit("stored point count does not match what was sent")


if __name__ == "__main__":
    main()
