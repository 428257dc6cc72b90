"""`nmig import` creating the target project: with the legacy key, visibility and description; and, where
another project of the workspace already has that key, without the key, saying so, importing all the same."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from importer_helpers import T0_MS, items, report, write_bundle

from nmig.emulators.http import EmulatorInfo
from nmig.importer.plan import PROJECT_RUN_ID


def _run_ids(found: list[str]) -> list[str]:
    """The imported runs, without the run holding the legacy project's own metadata (docs/mapping.md)."""
    return sorted(run for run in found if run != PROJECT_RUN_ID)


def _small_run(w: Any) -> None:
    w.add_atom("sys/name", "string", "keyed")
    w.add_atom("params/lr", "float", 0.01)
    w.add_float_points("train/loss", [0, 1, 2], [3.0, 2.0, 1.0], [T0_MS, T0_MS + 1, T0_MS + 2])


def _projects(api_token: str) -> dict[str, dict[str, Any]]:
    from neptune_scale.net.projects import get_project_list

    return {f"{e['organizationName']}/{e['name']}": e for e in get_project_list(api_token=api_token)}


def test_the_legacy_key_visibility_and_description_arrive(neptune3: EmulatorInfo, run_cli: Any, tmp_path: Path, nq: Any) -> None:
    source = {"workspace": "legacy", "project": "keyed", "key": "KEYD", "visibility": "public", "description": "legacy words"}
    bundle = write_bundle(tmp_path / "b", {"KEYD-1": _small_run}, source=source)

    result = run_cli("import", str(bundle), "--project", "demo/keyed", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 0, result.output
    assert "WITHOUT" not in result.stderr

    created = _projects(neptune3.api_token)["demo/keyed"]
    assert (created["projectKey"], created["visibility"], created["description"]) == ("KEYD", "pub", "legacy words")
    assert _run_ids(nq.list_runs(project="demo/keyed")) == ["KEYD-1"]
    assert items(report(bundle), case="project_key_taken") == []


def test_a_taken_key_creates_the_project_without_it_and_says_so(
    neptune3: EmulatorInfo, run_cli: Any, tmp_path: Path, nq: Any
) -> None:
    from neptune_scale.projects import create_project

    create_project("demo/holder", key="VISION", api_token=neptune3.api_token)
    source = {"workspace": "legacy", "project": "vision", "key": "VISION", "visibility": "workspace", "description": "cats"}
    bundle = write_bundle(tmp_path / "b", {"VISION-1": _small_run, "VISION-2": _small_run}, source=source)

    result = run_cli("import", str(bundle), "--project", "demo/vision", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 0, result.output
    # said even under --quiet, on one line, naming the key
    said = [line for line in result.stderr.splitlines() if "WITHOUT the legacy key 'VISION'" in line]
    assert len(said) == 1 and "taken" in said[0], result.stderr
    doc = report(bundle)
    assert len(items(doc, case="project_key_taken")) == 1
    assert "WITHOUT the legacy key" in doc["project_note"]

    projects = _projects(neptune3.api_token)
    assert projects["demo/holder"]["projectKey"] == "VISION"  # the other project keeps its key
    created = projects["demo/vision"]
    assert created["projectKey"] not in ("VISION", "")
    assert (created["visibility"], created["description"]) == ("workspace", "cats")  # the rest still arrives

    assert _run_ids(nq.list_runs(project="demo/vision")) == ["VISION-1", "VISION-2"]
    verified = run_cli("verify", str(bundle), "--project", "demo/vision", "--api-token", neptune3.api_token, "--quiet")
    assert verified.exit_code == 0, verified.output

    # a re-run imports into the project it made, without a second note about the key
    again = run_cli("import", str(bundle), "--project", "demo/vision", "--api-token", neptune3.api_token, "--quiet")
    assert again.exit_code == 0, again.output
    assert "WITHOUT" not in again.stderr


def test_a_key_the_service_refuses_as_invalid_is_left_out_with_its_reason(
    neptune3: EmulatorInfo, run_cli: Any, tmp_path: Path, nq: Any
) -> None:
    source = {"workspace": "legacy", "project": "odd", "key": "odd-key"}  # not 1-10 upper-case letters/digits
    bundle = write_bundle(tmp_path / "b", {"ODD-1": _small_run}, source=source)

    result = run_cli("import", str(bundle), "--project", "demo/odd", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code == 0, result.output
    said = [line for line in result.stderr.splitlines() if "WITHOUT the legacy key 'odd-key'" in line]
    assert len(said) == 1 and "refused" in said[0] and "Invalid project key" in said[0], result.stderr
    assert _projects(neptune3.api_token)["demo/odd"]["projectKey"] == "ODD"
    assert _run_ids(nq.list_runs(project="demo/odd")) == ["ODD-1"]


def test_a_visibility_the_target_plan_refuses_is_one_line_and_visibility_overrides_it(run_cli: Any, tmp_path: Path) -> None:
    import neptune_query
    from neptune_query import runs as nq_runs

    from nmig.emulators.neptune3 import serve_neptune3

    source = {"workspace": "legacy", "project": "open", "key": "OPEN", "visibility": "public", "description": "d"}
    bundle = write_bundle(tmp_path / "b", {"OPEN-1": _small_run}, source=source)
    with serve_neptune3(allowed_visibilities=("priv", "workspace")) as info:
        refused = run_cli("import", str(bundle), "--project", "demo/open", "--api-token", info.api_token, "--quiet")
        assert refused.exit_code != 0
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "does not allow 'pub'" in lines[0] and "priv, workspace" in lines[0], refused.stderr
        assert "--visibility" in lines[0] and "Traceback" not in refused.output
        assert "demo/open" not in _projects(info.api_token)

        done = run_cli("import", str(bundle), "--project", "demo/open", "--api-token", info.api_token, "--quiet",
                       "--visibility", "workspace")
        assert done.exit_code == 0, done.output
        created = _projects(info.api_token)["demo/open"]
        assert (created["projectKey"], created["visibility"], created["description"]) == ("OPEN", "workspace", "d")
        neptune_query.set_api_token(info.api_token)
        assert _run_ids(nq_runs.list_runs(project="demo/open")) == ["OPEN-1"]

    assert run_cli("import", str(bundle), "--visibility", "secret").exit_code == 2  # click names the choices


def test_an_unknown_workspace_is_one_line(neptune3: EmulatorInfo, run_cli: Any, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "b", {"NOWS-1": _small_run}, source={"workspace": "legacy", "project": "nows"})
    result = run_cli("import", str(bundle), "--project", "elsewhere/nows", "--api-token", neptune3.api_token, "--quiet")
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == ["nmig: error: workspace 'elsewhere' does not exist on the 3.x service"], result.stderr


def test_the_target_is_found_by_its_exact_name(neptune3: EmulatorInfo, run_cli: Any, tmp_path: Path, nq: Any) -> None:
    """A project whose name contains the target's (a search would match both) is not taken for it."""
    from neptune_scale.projects import create_project

    create_project("demo/exact-name-longer", api_token=neptune3.api_token)
    bundle = write_bundle(tmp_path / "b", {"EXACT-1": _small_run}, source={"workspace": "legacy", "project": "exact"})
    result = run_cli("import", str(bundle), "--project", "demo/exact-name", "--api-token", neptune3.api_token)
    assert result.exit_code == 0, result.output
    assert "created project demo/exact-name" in result.output + result.stderr
    assert _run_ids(nq.list_runs(project="demo/exact-name")) == ["EXACT-1"]
    assert _run_ids(nq.list_runs(project="demo/exact-name-longer")) == []
