"""What `run_import` returns and what the import report keeps across invocations: each invocation's result
speaks of that invocation only, the report of every run seen, adjustments of earlier runs included; the library
prints no summary (the CLI does, once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo


def _small(w: Any) -> None:
    w.add_float_points("m", [0.0, 1.0], [1.0, 2.0], [T0_MS, T0_MS + 1])


def _adjusted(w: Any) -> None:
    # a step at 1e12 is beyond what 3.x keeps: not sent, and listed in the report as step_out_of_range
    w.add_float_points("m", [0.0, 1.0, 1e12], [1.0, 2.0, 3.0], [T0_MS, T0_MS + 1, T0_MS + 2])


def test_result_of_a_later_invocation_lists_only_its_own_runs(
    neptune3: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmig.importer import ImportOptions, run_import

    monkeypatch.chdir(tmp_path)
    bundle = write_bundle(tmp_path / "b", {"ONE-1": _small, "TWO-1": _small})
    options = {"bundle_dir": bundle, "project": "demo/own-runs", "api_token": neptune3.api_token, "quiet": True}
    first = run_import(ImportOptions(runs=["ONE-1"], **options))
    assert first.imported == ["ONE-1"]
    second = run_import(ImportOptions(runs=["TWO-1"], **options))
    assert second.imported == ["TWO-1"] and second.already == []
    assert "1 run(s) imported" in second.summary()
    doc = report(bundle)  # the report still covers both invocations
    assert sorted(doc["runs"]["imported"]) == ["ONE-1", "TWO-1"]
    third = run_import(ImportOptions(**options))
    assert third.imported == [] and sorted(third.already) == ["ONE-1", "TWO-1"]
    assert sorted(report(bundle)["runs"]["already_imported"]) == ["ONE-1", "TWO-1"]


def test_adjustments_of_runs_imported_earlier_stay_in_the_report(
    neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any
) -> None:
    bundle = write_bundle(tmp_path / "b", {"ADJ-1": _adjusted, "ADJ-2": _small})
    args = ["--project", "demo/kept-adjustments", "--api-token", neptune3.api_token, "--quiet"]
    assert run_cli("import", str(bundle), *args, "--runs", "ADJ-1").exit_code == 0
    first = items(report(bundle), "step_out_of_range", "ADJ-1")
    assert [i["path"] for i in first] == ["m"]

    # a re-run that skips ADJ-1 as already imported keeps what the first one said about it
    assert run_cli("import", str(bundle), *args).exit_code == 0
    doc = report(bundle)
    assert doc["runs"]["already_imported"] == ["ADJ-1"] and doc["runs"]["imported"] == ["ADJ-2"]
    assert items(doc, "step_out_of_range", "ADJ-1") == first
    assert len(items(doc, "already_imported", "ADJ-1")) == 1

    # and once more: the items are neither lost nor doubled
    assert run_cli("import", str(bundle), *args).exit_code == 0
    doc = report(bundle)
    assert items(doc, "step_out_of_range", "ADJ-1") == first and len(items(doc, "already_imported", "ADJ-1")) == 1

    # an earlier invocation killed before writing its report: the adjustments are found again in the bundle
    next(bundle.glob("import-report.*.json")).unlink()
    assert run_cli("import", str(bundle), *args).exit_code == 0
    assert items(report(bundle), "step_out_of_range", "ADJ-1") == first


def test_library_prints_no_summary_and_the_cli_prints_it_once(
    neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmig.importer import ImportOptions, run_import

    monkeypatch.chdir(tmp_path)
    bundle = write_bundle(tmp_path / "b", {"QUIET-1": _small})
    capfd.readouterr()
    result = run_import(ImportOptions(bundle_dir=bundle, project="demo/quiet", api_token=neptune3.api_token, quiet=True))
    assert result.imported == ["QUIET-1"]
    out, err = capfd.readouterr()
    assert out == "" and err == ""

    cli = run_cli("import", str(bundle), "--project", "demo/quiet", "--api-token", neptune3.api_token, "--quiet")
    assert cli.exit_code == 0
    assert cli.stdout == ""
    assert cli.stderr.count("nmig import: 0 run(s) imported into demo/quiet; 1 already imported") == 1
