"""Hand-made bundles for the rules an export of the all-types fixture does not reach: monitoring/*, group
tags, description, unit conversions, each 3.x limit, the dry run, and each bad input's one-line error."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo
from nmig.importer import limits

LONG_PATH = "deep/" + "x" * 1100
LONG_ID = "exp/" + "i" * 800


def _mapping_run(w: Any) -> None:
    w.add_atom("sys/name", "string", "handmade")
    w.add_atom("sys/description", "string", "a run made by hand")
    w.add_string_set("sys/group_tags", ["g1", "g2"])
    w.add_atom("sys/running_time", "int", 42)
    w.add_atom("sys/size", "float", 2048.0)
    w.add_atom("sys/failed", "bool", False)
    w.add_float_points("monitoring/cpu", [0, 1, 2], [10.0, 20.0, 30.0], [T0_MS, T0_MS + 1, T0_MS + 2])
    w.add_string_points("monitoring/abc/stdout", [0, 1], ["hello", "world"], [T0_MS, T0_MS + 1])


def _limits_run(w: Any) -> None:
    w.set_info(custom_run_id=LONG_ID)
    w.add_atom(LONG_PATH, "float", 1.5)
    w.add_string_points("text/long", [0, 1], ["short", "ż" * (limits.MAX_STRING_SERIES_VALUE_BYTES // 2 + 5)], [T0_MS, T0_MS + 1])
    w.add_float_points("m/big", [1.0, 2.0, 1e12, 3e12], [1.0, 2.0, 3.0, 4.0], [T0_MS] * 4)
    w.add_float_points("m/close", [1.0, 1.0000001, 1.0000004, 2.0], [1.0, 2.0, 3.0, 4.0], [T0_MS, T0_MS + 1, T0_MS + 2, T0_MS + 3])
    w.add_float_points("m/ts", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [T0_MS + 50, T0_MS, T0_MS + 100])


@pytest.fixture(scope="module")
def handmade(neptune3: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from nmig.cli import main

    bundle = write_bundle(tmp_path_factory.mktemp("handmade") / "b", {"HM-1": _mapping_run, "HM-2": _limits_run})
    result = CliRunner().invoke(main, ["import", str(bundle), "--project", "demo/handmade", "--api-token", neptune3.api_token, "--quiet"])
    assert result.exit_code == 0, result.output
    return bundle


def test_monitoring_group_tags_description_units(handmade: Path, nq: Any) -> None:
    row = nq.fetch_runs_table(
        project="demo/handmade",
        runs=["HM-1"],
        attributes=["sys/name", "sys/description", "sys/group_tags", "legacy_sys/running_time", "legacy_sys/size", "legacy_sys/failed"],
    ).iloc[0]
    assert row["sys/name"] == "handmade" and row["sys/description"] == "a run made by hand"
    assert set(row["sys/group_tags"]) == {"g1", "g2"}
    assert isinstance(row["legacy_sys/running_time"], float) and row["legacy_sys/running_time"] == 42.0
    assert row["legacy_sys/size"] == 2048 and not isinstance(row["legacy_sys/size"], float)
    assert row["legacy_sys/failed"] is False or row["legacy_sys/failed"] == False  # noqa: E712 (numpy bool)
    cpu = nq.fetch_metrics(project="demo/handmade", runs=["HM-1"], attributes=["runtime/cpu"]).reset_index()
    assert cpu["runtime/cpu"].tolist() == [10.0, 20.0, 30.0]
    stdout = nq.fetch_series(project="demo/handmade", runs=["HM-1"], attributes=["runtime/abc/stdout"]).reset_index()
    assert stdout["runtime/abc/stdout"].tolist() == ["hello", "world"]
    attributes = nq.list_attributes(project="demo/handmade", runs=["HM-1"])
    assert not [a for a in attributes if a.startswith("monitoring/")]


def test_each_limit_is_handled_and_reported(handmade: Path, nq: Any) -> None:
    run_id = limits.fit_run_id(LONG_ID + "~HM-2")  # a custom id 3.x cannot hold as it is: suffixed, then fitted
    assert "/" not in run_id and len(run_id.encode()) <= limits.MAX_RUN_ID_BYTES
    assert run_id in nq.list_runs(project="demo/handmade")
    short_path = limits.fit_attribute_path(LONG_PATH)
    assert nq.fetch_runs_table(project="demo/handmade", runs=[run_id], attributes=[short_path]).iloc[0][short_path] == 1.5
    text = nq.fetch_series(project="demo/handmade", runs=[run_id], attributes=["text/long"]).reset_index()
    assert text["text/long"].iloc[0] == "short"
    assert len(text["text/long"].iloc[1].encode()) <= limits.MAX_STRING_SERIES_VALUE_BYTES
    big = nq.fetch_metrics(project="demo/handmade", runs=[run_id], attributes=["m/big"]).reset_index()
    assert big["step"].tolist() == [1.0, 2.0]
    close = nq.fetch_metrics(project="demo/handmade", runs=[run_id], attributes=["m/close"]).reset_index()
    assert close["step"].tolist() == [1.0, 2.0] and close["m/close"].tolist() == [1.0, 4.0]  # the first point per step
    ts = nq.fetch_metrics(project="demo/handmade", runs=[run_id], attributes=["m/ts"], include_time="absolute").reset_index()
    assert [t.value // 1_000_000 for t in ts[("m/ts", "absolute_time")]] == [T0_MS + 50, T0_MS + 50, T0_MS + 100]
    doc = report(handmade)
    cases = {(i["path"], i["case"]) for i in items(doc, run="HM-2")}
    assert {
        ("sys/custom_run_id", "run_id_adjusted"),
        (LONG_PATH, "path_shortened"),
        ("text/long", "string_value_too_long"),
        ("m/big", "step_out_of_range"),
        ("m/close", "step_collision"),
        ("m/ts", "timestamp_decreasing"),
    } <= cases
    assert doc["targets"]["HM-2"] == run_id


def test_dry_run_writes_nothing(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    bundle = write_bundle(tmp_path / "b", {"DRY-1": _mapping_run, "DRY-2": _limits_run})
    before = sorted(p.relative_to(bundle) for p in bundle.rglob("*"))
    result = run_cli("import", str(bundle), "--project", "demo/dry", "--api-token", neptune3.api_token, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "DRY-1 -> DRY-1" in result.stdout and "monitoring/cpu -> runtime/cpu" in result.stdout
    assert "sys/running_time -> legacy_sys/running_time" in result.stdout
    for case in ("run_id_adjusted", "path_shortened", "string_value_too_long", "step_out_of_range", "step_collision",
                 "timestamp_decreasing"):
        assert f": {case}: " in result.stdout, case
    assert sorted(p.relative_to(bundle) for p in bundle.rglob("*")) == before
    from neptune_scale.projects import list_projects

    assert "demo/dry" not in list_projects(api_token=neptune3.api_token)
    assert not (tmp_path / ".neptune").exists()


def test_bad_inputs_get_one_clear_line(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any) -> None:
    bundle = write_bundle(tmp_path / "b", {"BAD-1": _mapping_run})

    def fails(*args: str, expect: str, code: int = 2) -> None:
        result = run_cli("import", *args)
        assert result.exit_code == code, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("nmig: error:") and expect in lines[0], result.stderr
        assert "Traceback" not in result.output
        assert neptune3.api_token not in result.output

    fails(str(bundle), "--project", "demo/x", expect="no API token")
    fails(str(bundle), "--project", "demo/x", "--api-token", "not-a-token", expect="malformed")
    from nmig.secrets import api_address, make_api_token

    wrong = make_api_token(api_address(neptune3.api_token) or "", "wrong-key")
    fails(str(bundle), "--project", "demo/x", "--api-token", wrong, expect="refused the API token")
    fails(str(bundle), "--project", "nowhere/x", "--api-token", neptune3.api_token, expect="workspace 'nowhere' does not exist")
    fails(str(tmp_path), "--project", "demo/x", "--api-token", neptune3.api_token, expect="not an nmig bundle")
    newer = tmp_path / "newer"
    newer.mkdir()
    (newer / "export.json").write_text(json.dumps({"format": "nmig-bundle", "format_version": "2.0"}))
    fails(str(newer), "--project", "demo/x", "--api-token", neptune3.api_token, expect="newer than this nmig supports")
    fails(str(bundle), "--project", "demo/x", "--api-token", neptune3.api_token, "--runs", "NOPE-9", expect="matches no run")
    fails(str(bundle), "--project", "demo/missing", "--api-token", neptune3.api_token, "--no-create-project", expect="does not exist")


def test_checksum_mismatch_refuses_that_run_only(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    def series(w: Any) -> None:
        w.add_float_points("m", np.arange(5.0), np.arange(5.0), T0_MS + np.arange(5))

    bundle = write_bundle(tmp_path / "b", {"OK-1": series, "BROKEN-1": series})
    parquet = bundle / "runs" / "BROKEN-1" / "series_float.parquet"
    data = bytearray(parquet.read_bytes())
    data[len(data) // 2] ^= 0xFF
    parquet.write_bytes(bytes(data))
    dry = run_cli("import", str(bundle), "--project", "demo/checksum", "--dry-run")
    assert dry.exit_code == 0 and "BROKEN-1 -: refused: bundle damaged" in dry.stdout and "run OK-1 -> OK-1" in dry.stdout
    result = run_cli("import", str(bundle), "--project", "demo/checksum", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 1, result.output
    assert "BROKEN-1" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert nq.list_runs(project="demo/checksum") == ["OK-1"]
    doc = report(bundle)
    assert doc["runs"]["refused"] == ["BROKEN-1"] and doc["runs"]["imported"] == ["OK-1"]
    refused = items(doc, "refused", "BROKEN-1")
    assert refused and "checksum" in refused[0]["detail"]


def test_nan_and_infinite_configs_kept(handmade: Path, neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    def atoms(w: Any) -> None:
        w.add_atom("p/nan", "float", float("nan"))
        w.add_atom("p/inf", "float", float("inf"))
        w.add_atom("p/ninf", "float", float("-inf"))

    bundle = write_bundle(tmp_path / "b", {"NAN-1": atoms})
    assert run_cli("import", str(bundle), "--project", "demo/nan", "--api-token", neptune3.api_token, "--quiet").exit_code == 0
    assert set(nq.list_attributes(project="demo/nan", runs=["NAN-1"])) >= {"p/nan", "p/inf", "p/ninf"}
    row = nq.fetch_runs_table(project="demo/nan", runs=["NAN-1"], attributes=["p/nan", "p/inf", "p/ninf"]).iloc[0]
    assert math.isnan(row["p/nan"]) and row["p/inf"] == math.inf and row["p/ninf"] == -math.inf


def test_runs_selection_and_report_covering_every_invocation(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    def small(w: Any) -> None:
        w.add_float_points("m", [0.0, 1.0], [1.0, 2.0], [T0_MS, T0_MS + 1])

    bundle = write_bundle(tmp_path / "b", {"SEL-1": small, "SEL-2": small, "OTHER-1": small})
    state = tmp_path / "elsewhere" / "state.json"  # a read-only bundle keeps its state elsewhere
    args = ["--project", "demo/selection", "--api-token", neptune3.api_token, "--quiet", "--state", str(state)]
    assert run_cli("import", str(bundle), *args, "--runs", "SEL-1").exit_code == 0
    assert nq.list_runs(project="demo/selection") == ["SEL-1"]
    assert run_cli("import", str(bundle), *args, "--runs", "SEL-.*", "--runs", "OTHER-1").exit_code == 0
    assert sorted(nq.list_runs(project="demo/selection")) == ["OTHER-1", "SEL-1", "SEL-2"]
    assert not list(bundle.glob("import-*"))
    doc = json.loads((tmp_path / "elsewhere" / "state.report.json").read_text())
    assert doc["runs"]["already_imported"] == ["SEL-1"] and sorted(doc["runs"]["imported"]) == ["OTHER-1", "SEL-2"]
    assert sorted(doc["targets"]) == ["OTHER-1", "SEL-1", "SEL-2"]


def test_incomplete_run_is_refused_with_its_reason(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    from nmig.schema import EntityWriter

    def small(w: Any) -> None:
        w.add_atom("p", "int", 1)

    bundle = write_bundle(tmp_path / "b", {"DONE-1": small})
    with EntityWriter(bundle, "run", "HALF-1") as writer:
        writer.add_atom("p", "int", 2)
        writer.error("train/loss", "the legacy service kept failing")
    result = run_cli("import", str(bundle), "--project", "demo/incomplete", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 1 and "HALF-1" in result.stderr
    assert nq.list_runs(project="demo/incomplete") == ["DONE-1"]
    refused = items(report(bundle), "refused", "HALF-1")
    assert len(refused) == 1 and "the legacy service kept failing" in refused[0]["detail"]


def test_one_import_per_state_file(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any) -> None:
    from nmig.importer.state import StateLock

    def small(w: Any) -> None:
        w.add_atom("p", "int", 1)

    bundle = write_bundle(tmp_path / "b", {"LOCK-1": small})
    state = tmp_path / "state.json"
    with StateLock(state):
        result = run_cli("import", str(bundle), "--project", "demo/locked", "--api-token", neptune3.api_token, "--quiet",
                         "--state", str(state))
    assert result.exit_code == 2 and "another nmig import is using" in result.stderr
    result = run_cli("import", str(bundle), "--project", "demo/locked", "--api-token", neptune3.api_token, "--quiet",
                     "--state", str(state))
    assert result.exit_code == 0, result.output


def test_two_runs_on_one_target_id_are_not_merged(tmp_path: Path, run_cli: Any) -> None:
    def custom(run_id: str) -> Any:
        def fill(w: Any) -> None:
            w.set_info(custom_run_id=run_id)

        return fill

    # "a/b" with its "/" replaced would be TWIN-2's "a_b": the changed id keeps TWIN-1's sys/id, both land
    bundle = write_bundle(tmp_path / "b", {"TWIN-1": custom("a/b"), "TWIN-2": custom("a_b")})
    result = run_cli("import", str(bundle), "--project", "demo/twins", "--dry-run")
    assert result.exit_code == 0
    assert "run TWIN-1 -> a_b~TWIN-1" in result.stdout and "run TWIN-2 -> a_b:" in result.stdout
    assert "refused" not in result.stdout
    # the same custom id as it stands twice (2.x resumes by custom id, so only a hand-made bundle has it)
    bundle = write_bundle(tmp_path / "c", {"TWIN-1": custom("same"), "TWIN-2": custom("same")})
    result = run_cli("import", str(bundle), "--project", "demo/twins", "--dry-run")
    assert "TWIN-2 -: refused: its 3.x run id 'same' is already the target of run TWIN-1" in result.stdout


def test_target_project_defaults(tmp_path: Path, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def small(w: Any) -> None:
        w.add_atom("p", "int", 1)

    bundle = write_bundle(tmp_path / "b", {"DEF-1": small}, source={"workspace": "old", "project": "vision"})
    monkeypatch.delenv("NEPTUNE_PROJECT", raising=False)
    result = run_cli("import", str(bundle), "--project", "neww", "--dry-run")
    assert result.exit_code == 0 and "Target project: neww/vision" in result.stdout
    result = run_cli("import", str(bundle), "--dry-run", env={"NEPTUNE_PROJECT": "ws/named"})
    assert result.exit_code == 0 and "Target project: ws/named" in result.stdout
    result = run_cli("import", str(bundle), "--dry-run")
    assert result.exit_code == 2 and "no target project" in result.stderr
