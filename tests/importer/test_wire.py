"""nmig.importer.wire produces exactly the bytes the protobuf library does for the same points."""

from __future__ import annotations

import numpy as np
import pytest
from neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2 import RunOperation

from nmig.importer import client, wire


@pytest.mark.parametrize("path", ["train/loss", "p" * 300, "żółw/ü métrique", "a"])
def test_encoding_matches_the_protobuf_library(path: str) -> None:
    rng = np.random.default_rng(7)
    n = 5000
    micros = np.sort(rng.integers(0, 10**18 - 1, n))
    micros[:6] = [0, 1, 999_999, 1_000_000, 1_000_001, 127]
    values = rng.normal(size=n)
    values[:5] = [0.0, np.nan, np.inf, -np.inf, -0.0]
    stamps = rng.integers(0, 4 * 10**12, n)
    stamps[:4] = [0, 999, 1000, 128_000]
    reference = client.new_request("ws/p", "run-1")
    client.append_points(reference, path, micros.tolist(), values.tolist(), stamps.tolist(), "float64")
    encoded = wire.wrap_update_batch("ws/p", "run-1", wire.encode_float_snapshots(path, micros, values, stamps))
    assert encoded == reference.SerializeToString()
    assert RunOperation.FromString(encoded) == reference


def test_empty_and_negative_inputs() -> None:
    assert wire.encode_float_snapshots("m", np.array([], dtype=np.int64), np.array([]), np.array([], dtype=np.int64)) == b""
    with pytest.raises(ValueError):
        wire.encode_float_snapshots("m", np.array([-1]), np.array([1.0]), np.array([0]))


@pytest.mark.parametrize("path_bytes", [1, 64, 300, 1024])
def test_a_float_request_stays_within_its_byte_budget_whatever_the_path(path_bytes: int) -> None:
    # the largest steps and timestamps (longest varints) with a path of 3.x's longest: one request's points
    # encode to no more than DIRECT_REQUEST_BYTES, so a long path never makes a request the client refuses
    from nmig.importer.client import DIRECT_REQUEST_BYTES, DIRECT_REQUEST_POINTS, float_points_per_request

    path = "p" * path_bytes
    n = float_points_per_request(path)
    micros = np.full(n, 2**62, dtype=np.int64) + np.arange(n, dtype=np.int64)
    stamps = np.full(n, -(2**62), dtype=np.int64)
    encoded = wire.encode_float_snapshots(path, micros, np.full(n, np.nan), stamps)
    assert len(encoded) <= DIRECT_REQUEST_BYTES
    assert n == DIRECT_REQUEST_POINTS or len(encoded) > DIRECT_REQUEST_BYTES // 2  # not needlessly small
