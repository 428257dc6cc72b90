"""Errors the service reports through the client are attributed to run and path, the rest still imports,
the exit status is non-zero, and a re-run retries only what is not imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo


def test_service_errors_are_attributed_and_the_rest_imports(neptune3: EmulatorInfo, tmp_path: Path, run_cli: Any, nq: Any) -> None:
    from neptune_scale import Run

    project = "demo/conflicts"
    from neptune_scale.projects import create_project

    create_project(project, api_token=neptune3.api_token)
    # The target already holds CONF-1 with params/lr as a string and m/text as a metric: the legacy types differ.
    with Run(run_id="CONF-1", project=project, api_token=neptune3.api_token, log_directory=tmp_path / "ns",
             enable_console_log_capture=False, source_tracking_config=None) as run:
        run.log_configs({"params/lr": "fast"})
        run.log_metrics({"m/text": 1.0}, step=0)

    def conflicting(w: Any) -> None:
        w.add_atom("params/lr", "float", 0.5)
        w.add_atom("params/ok", "int", 7)
        w.add_string_points("m/text", [1.0, 2.0], ["a", "b"], [T0_MS, T0_MS + 1])
        w.add_float_points("m/fine", np.arange(10.0), np.arange(10.0), T0_MS + np.arange(10))

    def clean(w: Any) -> None:
        w.add_float_points("m/fine", np.arange(10.0), np.arange(10.0), T0_MS + np.arange(10))

    bundle = write_bundle(tmp_path / "b", {"CONF-1": conflicting, "CLEAN-1": clean})
    result = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 1, result.output
    assert "CONF-1" in result.stderr
    doc = report(bundle)
    assert doc["runs"]["imported"] == ["CLEAN-1"] and doc["runs"]["failed"] == ["CONF-1"]
    failed = {i["path"]: i["detail"] for i in items(doc, "failed", "CONF-1")}
    # exact paths: the config error is narrowed by reading the configs back
    assert set(failed) == {"params/lr", "m/text"}, failed
    assert all(detail.startswith("NeptuneAttributeTypeMismatch: the attribute type") for detail in failed.values()), failed
    # the rest of the failing run still arrived
    fine = nq.fetch_metrics(project=project, runs=["CONF-1"], attributes=["m/fine"]).reset_index()
    assert fine["step"].tolist() == list(np.arange(10.0))
    assert nq.fetch_runs_table(project=project, runs=["CONF-1"], attributes=["params/ok"]).iloc[0]["params/ok"] == 7

    # A re-run skips the imported run and retries the failed one, which fails the same way.
    again = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet")
    assert again.exit_code == 1
    doc = report(bundle)
    assert doc["runs"]["already_imported"] == ["CLEAN-1"] and doc["runs"]["failed"] == ["CONF-1"]
    assert items(doc, "earlier_attempt_failed", "CONF-1")
    fine = nq.fetch_metrics(project=project, runs=["CONF-1"], attributes=["m/fine"]).reset_index()
    assert fine["step"].tolist() == list(np.arange(10.0))  # resumed: nothing sent twice


def test_points_rejected_after_a_stale_resume_read_are_not_failures(
    neptune3: EmulatorInfo, tmp_path: Path, monkeypatch: Any, nq: Any
) -> None:
    """The real service may process a killed import's last request after the resume read: the points are
    sent again and rejected. Here the resume read is made stale on purpose (it claims step 49 while the
    target holds 0..79): the rejections are forgiven because the series then ends where the bundle's does."""
    from nmig.importer import ImportOptions, run_import, target
    from nmig.importer.replay import ResumePoint

    monkeypatch.chdir(tmp_path)
    project = "demo/stale-resume"

    def points(n: int) -> Any:
        def fill(w: Any) -> None:
            w.add_float_points("m", np.arange(float(n)), np.arange(float(n)) * 2, T0_MS + np.arange(n))

        return fill

    first = write_bundle(tmp_path / "first", {"STALE-1": points(80)})
    run_import(ImportOptions(bundle_dir=first, project=project, api_token=neptune3.api_token, quiet=True))
    second = write_bundle(tmp_path / "second", {"STALE-1": points(100)})
    monkeypatch.setattr(target, "resume_point", lambda project, token, plan: ResumePoint({"m": 49_000_000}))
    result = run_import(ImportOptions(bundle_dir=second, project=project, api_token=neptune3.api_token, quiet=True))
    assert result.imported == ["STALE-1"]
    doc = report(second)
    assert [i["path"] for i in items(doc, "duplicates_rejected", "STALE-1")] == ["m"]
    got = nq.fetch_metrics(project=project, runs=["STALE-1"], attributes=["m"]).reset_index()
    assert got["step"].tolist() == list(np.arange(100.0)) and got["m"].tolist() == list(np.arange(100.0) * 2)
