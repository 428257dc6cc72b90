"""The tamper suite: every damaged shape of a bundle, with COMPLETE re-signed over the damage.

For each case: `inspect --check` reports the run, `import --dry-run` refuses it, `import` refuses just that
run with one line and imports the others, the refused run has nothing in 3.x, nothing outside the bundle is
opened and no command takes longer than the time limit or prints a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cases import CASES, Case  # noqa: E402
from conftest import OPENED, TARGETS, resign  # noqa: E402

from nmig.emulators.http import EmulatorInfo  # noqa: E402
from nmig.importer.plan import PROJECT_RUN_ID  # noqa: E402


def _no_traceback(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def _project(case: Case) -> str:
    return f"demo/tamper-{case.name.replace('_', '-')}"


def _report(bundle: Path) -> dict[str, Any]:
    (found,) = sorted(bundle.glob("import-report.*.json"))
    return json.loads(found.read_text())


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_tampered_run_is_refused_whole(
    case: Case, copy_bundle: Any, run_cli: Any, neptune3: EmulatorInfo, tmp_path: Path, nq: Any
) -> None:
    bundle = copy_bundle()
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = bundle / "runs" / case.run
    try:
        case.tamper(run_dir, outside)
    except PermissionError:
        pytest.skip("this machine does not let the test create the special file")
    if case.resign:
        resign(run_dir)
    OPENED.clear()

    checked = run_cli("inspect", str(bundle), "--check")
    _no_traceback(checked)
    assert checked.exit_code == 1, checked.output
    assert f"run {case.run}" in checked.output

    dry = run_cli("import", str(bundle), "--dry-run", "--project", _project(case))
    _no_traceback(dry)
    refused_lines = [line for line in dry.output.splitlines() if f"{case.run} -: refused:" in line]
    assert len(refused_lines) == 1, dry.output
    assert not any(line.startswith(f"run {case.run} ->") for line in dry.output.splitlines())

    imported = run_cli("import", str(bundle), "--project", _project(case), "--api-token", neptune3.api_token, "--quiet")
    _no_traceback(imported)
    assert imported.exit_code == 1, imported.output
    assert f"1 run(s) not imported ({case.run})" in imported.output
    report = _report(bundle)
    assert report["runs"]["refused"] == [case.run]
    assert sorted(report["runs"]["imported"]) == sorted(set(TARGETS) - {case.run})
    (refusal,) = [i for i in report["items"] if i["run"] == case.run and i["case"] == "refused"]
    assert "\n" not in refusal["detail"] and refusal["detail"]
    # the refused run has nothing in 3.x; the others are there
    expected = [t for r, t in TARGETS.items() if r != case.run] + [PROJECT_RUN_ID]  # + the project's metadata
    assert sorted(nq.list_runs(project=_project(case))) == sorted(expected)

    escaped = [p for p in OPENED if Path(p).is_absolute() and Path(p).resolve().is_relative_to(outside.resolve())]
    assert not escaped, escaped


def test_runs_folder_a_symlink_out_is_refused_not_followed(
    copy_bundle: Any, run_cli: Any, neptune3: EmulatorInfo, tmp_path: Path, nq: Any
) -> None:
    """runs/ itself a symlink to a folder of runs elsewhere: none of them pass for this bundle's."""
    bundle = copy_bundle()
    elsewhere = tmp_path / "elsewhere"
    (bundle / "runs").rename(elsewhere)
    (bundle / "runs").symlink_to(elsewhere)
    OPENED.clear()
    for args in (("inspect", str(bundle), "--check"), ("inspect", str(bundle)),
                 ("import", str(bundle), "--dry-run", "--project", "demo/tamper-runs-link"),
                 ("import", str(bundle), "--project", "demo/tamper-runs-link", "--api-token", neptune3.api_token)):
        result = run_cli(*args)
        _no_traceback(result)
        assert result.exit_code == 2, result.output
        assert "runs is a symlink, not a folder; refusing to follow it" in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not [p for p in OPENED if Path(p).is_absolute() and Path(p).resolve().is_relative_to(elsewhere.resolve())]


def test_a_run_folder_that_is_a_symlink_is_a_stray(copy_bundle: Any, run_cli: Any, neptune3: EmulatorInfo, tmp_path: Path, nq: Any) -> None:
    bundle = copy_bundle()
    elsewhere = tmp_path / "AT-9"
    (bundle / "runs" / "AT-3").rename(elsewhere)
    (bundle / "runs" / "AT-3").symlink_to(elsewhere)
    result = run_cli("import", str(bundle), "--project", "demo/tamper-run-link", "--api-token", neptune3.api_token, "--quiet")
    _no_traceback(result)
    assert result.exit_code == 1, result.output
    report = _report(bundle)
    assert report["runs"]["refused"] == ["AT-3"]
    assert sorted(nq.list_runs(project="demo/tamper-run-link")) == sorted(["AT-2", "custom-atoms-001", PROJECT_RUN_ID])


def test_a_refused_run_that_3x_already_holds_in_part_is_reported_as_such(
    copy_bundle: Any, run_cli: Any, neptune3: EmulatorInfo, tmp_path: Path
) -> None:
    """An older nmig wrote part of AT-3 before finding its damage (here: an import with another state file got
    it there); the refusal says the target holds a partial run to delete. (A run whose manifest breaks its
    schema is refused as incomplete while it is planned, before its 3.x run id is known.)"""
    bundle = copy_bundle()
    project = "demo/tamper-half-written"
    first = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet",
                    "--runs", "AT-3", "--state", str(tmp_path / "old" / "state.json"))
    assert first.exit_code == 0, first.output
    run_dir = bundle / "runs" / "AT-3"
    CASES_BY_NAME["content_not_its_hash"].tamper(run_dir, tmp_path)
    resign(run_dir)
    again = run_cli("import", str(bundle), "--project", project, "--api-token", neptune3.api_token, "--quiet")
    assert again.exit_code == 1, again.output
    (refusal,) = [i for i in _report(bundle)["items"] if i["run"] == "AT-3" and i["case"] == "refused"]
    assert "3.x already holds a partly written run 'custom-files-003' from an earlier nmig import" in refusal["detail"]
    assert "does not match its sha256" in refusal["detail"]


CASES_BY_NAME = {case.name: case for case in CASES}
