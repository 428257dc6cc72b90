"""`nmig migrate` (export and import pipelined) gives the same 3.x target as `nmig export` then `nmig import`,
compared through neptune-query; it resumes like the two commands and refuses bad tokens before exporting."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nmig.cli import main
from nmig.emulators.http import EmulatorInfo

pytestmark = pytest.mark.timeout(240)

PROJECT = "demo/vision"
# Set by the service, so different between two imports of the same bundle.
VOLATILE_SYS = {"sys/id", "sys/modification_time", "sys/ping_time", "sys/experiment/is_head"}


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.sample import sample_fixture

    with serve_legacy(sample_fixture(runs=6, points=300)) as info:
        yield info


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env={"NEPTUNE_API_TOKEN": "", "NEPTUNE_LEGACY_API_TOKEN": "", **(env or {})})


def snapshot(info: EmulatorInfo) -> dict[str, Any]:
    """Everything neptune-query shows of the project, minus what the service sets itself."""
    import neptune_query
    from neptune_query import runs as nq

    neptune_query.set_api_token(info.api_token)
    run_ids = sorted(nq.list_runs(project=PROJECT))
    table = nq.fetch_runs_table(project=PROJECT, runs=run_ids, attributes=".", type_suffix_in_column_names=True)
    out: dict[str, Any] = {"runs": run_ids}
    for run_id, row in table.iterrows():
        cells = {}
        for column, value in row.items():
            path, _, type_ = str(column).rpartition(":")
            if path in VOLATILE_SYS or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if type_ in ("file", "file_series"):
                value = (value.size_bytes, value.mime_type)  # storage keys are the client's own choice
            elif isinstance(value, (set, frozenset)):
                value = sorted(value)
            cells[path] = (type_, str(value))
        if str(run_id) == "nmig-legacy-project":  # the legacy project has no creation time: the import time
            cells.pop("sys/creation_time", None)
        out[str(run_id)] = cells
        metrics = [p for p, (t, _) in cells.items() if t == "float_series"]
        strings = [p for p, (t, _) in cells.items() if t == "string_series"]
        frame = nq.fetch_metrics(project=PROJECT, runs=[run_id], attributes=metrics, include_time="absolute")
        out[f"{run_id} metrics"] = frame.to_json()
        frame = nq.fetch_series(project=PROJECT, runs=[run_id], attributes=strings, include_time="absolute")
        out[f"{run_id} strings"] = frame.to_json()
    return out


def test_migrate_gives_the_target_of_export_then_import(legacy: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    with serve_neptune3(data_dir=tmp_path / "two-steps") as target:
        bundle = tmp_path / "bundle-two-steps"
        assert invoke("export", "--project", "acme/vision", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet").exit_code == 0
        assert invoke("import", str(bundle), "--project", PROJECT, "--api-token", target.api_token, "--quiet").exit_code == 0
        expected = snapshot(target)
    from nmig.importer.plan import PROJECT_RUN_ID

    # the six runs, and the project-metadata run (the legacy project's description and attributes)
    run_tables = [cells for key, cells in expected.items() if isinstance(cells, dict) and key != PROJECT_RUN_ID]
    assert expected[PROJECT_RUN_ID]["legacy_project/key"] == ("string", "VIS")
    assert len(run_tables) == 6 and all(cells["train/loss"][0] == "float_series" for cells in run_tables)
    assert all(cells["model/weights"] == ("file", "(4096, 'application/octet-stream')") for cells in run_tables)
    with serve_neptune3(data_dir=tmp_path / "migrated") as target:
        bundle = tmp_path / "bundle-migrated"
        result = invoke(
            "migrate", "--from", "acme/vision", "--to", PROJECT, "--out", str(bundle), "--max-workers", "2", "--quiet",
            env={"NEPTUNE_LEGACY_API_TOKEN": legacy.api_token, "NEPTUNE_API_TOKEN": target.api_token},
        )
        assert result.exit_code == 0, result.output
        assert "imported 6 (0 already imported, 0 failed)" in result.output
        migrated = snapshot(target)
        assert len(migrated["runs"]) == 7 and PROJECT_RUN_ID in migrated["runs"]
        assert migrated == expected

        # the merged import report covers every run, as `nmig import` would have written it
        import json

        report = json.loads(next(bundle.glob("import-report.*.json")).read_text(encoding="utf-8"))
        assert sorted(report["runs"]["imported"]) == [f"VIS-{i}" for i in range(1, 7)]
        assert {i["run"] for i in report["items"] if i["case"] == "not_copied"} == {f"VIS-{i}" for i in range(1, 7)}
        verified = invoke("verify", str(bundle), "--project", PROJECT, "--api-token", target.api_token, "--quiet")
        assert verified.exit_code == 0, verified.output

        # a re-run finds everything done and changes nothing
        again = invoke(
            "migrate", "--from", "acme/vision", "--to", PROJECT, "--out", str(bundle), "--quiet",
            "--legacy-token", legacy.api_token, "--api-token", target.api_token,
        )
        assert again.exit_code == 0, again.output
        assert "imported 0 (6 already imported, 0 failed)" in again.output
        assert snapshot(target) == expected


def test_tokens_are_required_and_checked_before_exporting(legacy: EmulatorInfo, tmp_path: Path) -> None:
    from nmig.secrets import make_api_token

    out = tmp_path / "bundle"
    args = ["migrate", "--from", "acme/vision", "--to", PROJECT, "--out", str(out)]
    no_legacy = invoke(*args, "--api-token", "x")
    assert no_legacy.exit_code == 2 and "NEPTUNE_LEGACY_API_TOKEN" in no_legacy.output
    no_target = invoke(*args, "--legacy-token", legacy.api_token)
    assert no_target.exit_code == 2 and "no 3.x API token" in no_target.output
    # a well-formed token for a service that is not there: refused before anything is exported
    unreachable = make_api_token("http://127.0.0.1:9", "not-a-key")
    refused = invoke(*args, "--legacy-token", legacy.api_token, "--api-token", unreachable, "--timeout", "2")
    assert refused.exit_code == 2, refused.output
    assert refused.output.startswith("nmig: error:") and "Traceback" not in refused.output
    assert "within 2 s" in refused.output  # --timeout bounds the connection attempts
    assert "not-a-key" not in refused.output and unreachable not in refused.output
    assert not out.exists()
    # a 2.x token the service refuses: the export's own one-line error, nothing imported
    from nmig.emulators.neptune3 import serve_neptune3

    wrong = make_api_token(legacy.url, "wrong-key")
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        rejected = invoke(*args, "--legacy-token", wrong, "--api-token", target.api_token, "--quiet")
    assert rejected.exit_code == 2, rejected.output
    assert rejected.output.startswith("nmig: error: the export failed") and len(rejected.output.strip().splitlines()) == 1
    assert "wrong-key" not in rejected.output and wrong not in rejected.output and "--legacy-token" in rejected.output
    # a 3.x token a live service refuses: the export child, started meanwhile, never goes (nmig.child_gate)
    from nmig.emulators.legacy import LegacyEmulator
    from nmig.emulators.legacy import legacy_fault_plan as plan
    from nmig.emulators.sample import sample_fixture

    counting = LegacyEmulator(sample_fixture(runs=2, points=10))
    with counting.serve(plan()) as source, serve_neptune3(data_dir=tmp_path / "n3b") as target:
        refused_3x = make_api_token(target.url, "not-the-key")
        gated = invoke("migrate", "--from", "acme/vision", "--to", PROJECT, "--out", str(tmp_path / "gated"),
                       "--legacy-token", source.api_token, "--api-token", refused_3x, "--quiet")
    assert gated.exit_code == 2, gated.output
    assert "refused the API token" in gated.output and "not-the-key" not in gated.output
    assert not (tmp_path / "gated").exists() and not counting.stats, counting.stats  # no folder, no 2.x request
    bad_target = invoke("migrate", "--from", "acme/vision", "--to", "no-project", "--out", str(out), "--legacy-token", "t", "--api-token", "t")
    assert bad_target.exit_code == 2 and "WORKSPACE/PROJECT" in bad_target.output


def test_the_export_child_gets_a_quarter_of_the_workers() -> None:
    from nmig.migrate import export_workers

    assert [export_workers(n) for n in (1, 2, 4, 8, 16, 64)] == [1, 2, 2, 2, 4, 16]


def test_an_export_started_behind_the_gate_waits_for_go(tmp_path: Path) -> None:
    # `python -m nmig export` as migrate starts it: with the pipe closed it exits having asked the 2.x
    # service nothing and created nothing; told "go" it exports.
    import os
    import subprocess
    import sys

    from nmig.child_gate import GATE_ENV, GATED_OFF_STATUS, GO
    from nmig.emulators.legacy import LegacyEmulator
    from nmig.emulators.legacy import legacy_fault_plan as plan
    from nmig.emulators.sample import sample_fixture

    counting = LegacyEmulator(sample_fixture(runs=1, points=10))
    with counting.serve(plan()) as source:
        env = {**os.environ, **(source.env or {}), GATE_ENV: "1", "NEPTUNE_API_TOKEN": source.api_token}
        command = [sys.executable, "-m", "nmig", "export", "--project", "acme/vision", "--quiet"]
        closed = subprocess.run([*command, "--out", str(tmp_path / "closed")], env=env, input=b"", capture_output=True, timeout=120)
        assert closed.returncode == GATED_OFF_STATUS, closed.stderr
        assert not (tmp_path / "closed").exists() and not counting.stats, counting.stats
        went = subprocess.run([*command, "--out", str(tmp_path / "went")], env=env, input=GO.encode() + b"\n",
                              capture_output=True, timeout=120)
        assert went.returncode == 0, went.stderr
        assert (tmp_path / "went" / "export.json").is_file() and counting.stats["getFloatSeriesValues"] > 0
