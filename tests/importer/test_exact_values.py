"""Steps and times arrive bit for bit where neptune-scale's own arithmetic would shift them (issue 10): steps
between 1e9 and 1e12 (decompose_step rounds step * 1e6 in float64) and datetimes before 1970 (datetime_to_proto
truncates toward zero), for configs, the creation time and series points of every kind, read back through
neptune-query; and `nmig verify` tells the exact values from the shifted ones the client would have sent."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from importer_helpers import write_bundle

from nmig.cli import main
from nmig.emulators.http import EmulatorInfo

pytestmark = pytest.mark.timeout(180)

PROJECT = "demo/exact"
UTC = dt.timezone.utc
BIG_STEPS = [1e9, 1e9 + 0.5, 123456789012.375, 2.0**39 + 0.25, 999999999998.5, 999999999999.0]
PRE_EPOCH_MS = [-1, -999, -1000, -1001, -86_400_000 * 365 - 7]  # 1969-12-31T23:59:59.999Z, ...
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32


def _exact_run(w: Any) -> None:
    w.add_atom("sys/name", "string", "exact")
    w.add_atom("params/before_epoch", "datetime", "1969-12-31T23:59:59.999Z")
    w.add_atom("params/long_ago", "datetime", "1901-02-03T04:05:06.789Z")
    w.add_atom("params/after_epoch", "datetime", "2024-05-01T12:00:00.678Z")
    w.add_float_points("m/tokens", BIG_STEPS, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1_700_000_000_000 + i for i in range(6)])
    w.add_string_points("logs/tokens", BIG_STEPS, [f"at {s!r}" for s in BIG_STEPS], [1_700_000_000_000 + i for i in range(6)])
    w.add_float_points("m/old", [0.0, 1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0, 5.0], sorted(PRE_EPOCH_MS))
    for i, step in enumerate([2.0**39 + 0.25, 999999999999.0]):
        w.add_file_series_point("images/big", step, -1001 + i, f"img{i}", None, PNG + bytes([i]), "png")


@pytest.fixture(scope="module")
def exact(neptune3: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = write_bundle(tmp_path_factory.mktemp("exact") / "b", {"EX-1": _exact_run}, created={"EX-1": "1969-12-31T23:59:59.999Z"})
    result = CliRunner().invoke(main, ["import", str(bundle), "--project", PROJECT, "--api-token", neptune3.api_token, "--quiet"])
    assert result.exit_code == 0, result.output
    return bundle


def _ms(value: Any) -> int:
    return int(value.value // 1_000_000) if hasattr(value, "value") else int(value)


def test_datetimes_before_1970_arrive_to_the_millisecond(exact: Path, nq: Any) -> None:
    row = nq.fetch_runs_table(
        project=PROJECT, runs=["EX-1"],
        attributes=["params/before_epoch", "params/long_ago", "params/after_epoch", "sys/creation_time"],
    ).iloc[0]
    assert row["params/before_epoch"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    assert row["params/long_ago"] == dt.datetime(1901, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC)
    assert row["params/after_epoch"] == dt.datetime(2024, 5, 1, 12, 0, 0, 678_000, tzinfo=UTC)
    assert row["sys/creation_time"] == dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)
    old = nq.fetch_metrics(project=PROJECT, runs=["EX-1"], attributes=["m/old"], include_time="absolute").reset_index()
    assert [_ms(t) for t in old[("m/old", "absolute_time")]] == sorted(PRE_EPOCH_MS)


def test_steps_between_1e9_and_1e12_arrive_exactly(exact: Path, nq: Any) -> None:
    floats = nq.fetch_metrics(project=PROJECT, runs=["EX-1"], attributes=["m/tokens"]).reset_index()
    assert floats["step"].tolist() == BIG_STEPS
    assert floats["m/tokens"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    strings = nq.fetch_series(project=PROJECT, runs=["EX-1"], attributes=["logs/tokens"]).reset_index()
    assert strings["step"].tolist() == BIG_STEPS
    assert strings["logs/tokens"].tolist() == [f"at {s!r}" for s in BIG_STEPS]
    files = nq.fetch_series(project=PROJECT, runs=["EX-1"], attributes=["images/big"], include_time="absolute").reset_index()
    assert files["step"].tolist() == [2.0**39 + 0.25, 999999999999.0]
    assert [_ms(t) for t in files[("images/big", "absolute_time")]] == [-1001, -1000]


def test_verify_is_green_on_the_exact_import(exact: Path, neptune3: EmulatorInfo, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["verify", str(exact), "--project", PROJECT, "--api-token", neptune3.api_token, "--quiet"])
    assert result.exit_code == 0, result.output


def test_verify_catches_what_the_clients_own_arithmetic_sends(
    exact: Path, neptune3: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same values written by the official Run API as a training script would: verify finds the shifted
    step and the shifted datetime (it compares exact values, so it would have caught both)."""
    from neptune_scale import Run

    monkeypatch.chdir(tmp_path)
    project = "demo/exact-naive"
    from neptune_scale.projects import create_project

    create_project(project.split("/")[1], workspace="demo", api_token=neptune3.api_token)
    with Run(run_id="EX-1", project=project, api_token=neptune3.api_token, experiment_name="exact",
             creation_time=dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
             enable_console_log_capture=False, source_tracking_config=None) as run:
        run.log_configs({
            "params/before_epoch": dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC),
            "params/long_ago": dt.datetime(1901, 2, 3, 4, 5, 6, 789_000, tzinfo=UTC),
            "params/after_epoch": dt.datetime(2024, 5, 1, 12, 0, 0, 678_000, tzinfo=UTC),
            "legacy_sys/name": "exact", "legacy_sys/id": "EX-1",
        })
        for i, step in enumerate(BIG_STEPS):
            run.log_metrics({"m/tokens": float(i + 1)}, step=step,
                            timestamp=dt.datetime.fromtimestamp((1_700_000_000_000 + i) / 1000, tz=UTC))
    result = CliRunner().invoke(
        main, ["verify", str(exact), "--project", project, "--api-token", neptune3.api_token, "--quiet",
               "--report", str(tmp_path / "v.json")],
    )
    assert result.exit_code == 1
    import json

    found = {(d["path"], d["what"]) for run in json.loads((tmp_path / "v.json").read_text())["runs"] for d in run["differences"]}
    assert ("params/before_epoch", "config_differs") in found
    assert ("sys/creation_time", "creation_time_differs") in found
    # 999999999999.0 arrives as 999999999999.000064 through decompose_step: a point verify does not expect
    assert ("m/tokens", "missing_points") in found and ("m/tokens", "unexpected_points") in found


def test_negative_timestamps_encode_like_the_protobuf_library() -> None:
    from nmig.importer import client, wire

    micros = np.array([0, 1, 999_999_000_000_000_000, 549_755_813_888_250_000])
    stamps = np.array([-1, -1000, -1001, -(2**40)])
    values = np.array([1.0, 2.0, 3.0, 4.0])
    reference = client.new_request("ws/p", "r")
    client.append_points(reference, "m", micros.tolist(), values.tolist(), stamps.tolist(), "float64")
    assert wire.wrap_update_batch("ws/p", "r", wire.encode_float_snapshots("m", micros, values, stamps)) == reference.SerializeToString()
    first = reference.update_batch.snapshots[0].timestamp
    assert (first.seconds, first.nanos) == (-1, 999_000_000)
    assert wire.datetime_ms(dt.datetime(1969, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC)) == -1
