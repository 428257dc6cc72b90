"""A workspace of three projects through the real clients: `nmig export --workspace` (selection, index and
bundles, resume), then `nmig import`, `verify` and `inspect` of the root against the 3.x emulator, with the
default naming and with --project-map; a tampered index is refused with one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from workspace_helpers import PROJECTS, invoke

from nmig.emulators.http import EmulatorInfo
from nmig.schema import ROOT_INDEX, read_root

pytestmark = pytest.mark.timeout(300)


def test_export_writes_the_index_and_one_bundle_per_project(root: Path) -> None:
    index = read_root(root)
    assert index.workspace == "acme"
    assert [(p.project, p.folder) for p in index.projects] == [(name, name) for name in PROJECTS]
    for entry in index.projects:
        export_info = json.loads((root / entry.folder / "export.json").read_text())
        assert (export_info["source"]["workspace"], export_info["source"]["project"]) == ("acme", entry.project)
        assert sorted(p.name for p in (root / entry.folder / "runs").iterdir()) == [f"{export_info['source']['key']}-1", f"{export_info['source']['key']}-2"]


def test_projects_are_chosen_and_a_rerun_resumes(legacy: EmulatorInfo, tmp_path: Path) -> None:
    out = tmp_path / "root"
    first = invoke("export", "--workspace", "acme", "--out", str(out), "--api-token", legacy.api_token,
                   "--projects", "vision|text-.*", "--exclude-projects", "text-nlp")
    assert first.exit_code == 0, first.output
    assert [p.project for p in read_root(out).projects] == ["vision"]
    assert "acme/vision -> " in first.output and "workspace acme: 1 project(s), 1 complete" in first.output
    again = invoke("export", "--workspace", "acme", "--out", str(out), "--api-token", legacy.api_token, "--projects", "audio|vision")
    assert again.exit_code == 0, again.output
    # the second selection adds audio; vision was complete and stays as it was
    assert [p.project for p in read_root(out).projects] == ["audio", "vision"]
    assert "acme/vision -> " in again.output and "exported 0, already complete 2" in again.output


def test_bad_selections_are_one_line(legacy: EmulatorInfo, tmp_path: Path) -> None:
    none = invoke("export", "--workspace", "acme", "--out", str(tmp_path / "r"), "--api-token", legacy.api_token, "--projects", "nothing")
    assert none.exit_code == 2 and "no project of workspace acme is chosen (3 listed, --projects 'nothing')" in none.output
    bad = invoke("export", "--workspace", "acme", "--out", str(tmp_path / "r"), "--api-token", legacy.api_token, "--projects", "(")
    assert bad.exit_code == 2 and "--projects '(' is not a valid regular expression" in bad.output
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    busy = invoke("export", "--workspace", "acme", "--out", str(tmp_path / "busy"), "--api-token", legacy.api_token)
    assert busy.exit_code == 2 and "not empty and not an nmig workspace root" in busy.output


def test_a_tampered_index_is_refused_in_one_line(root: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    doc = json.loads((copy / ROOT_INDEX).read_text())
    doc["projects"][0]["folder"] = "../../etc"
    (copy / ROOT_INDEX).write_text(json.dumps(doc))
    for command in (["inspect", str(copy)], ["import", str(copy), "--project", "demo", "--dry-run"]):
        result = invoke(*command)
        assert result.exit_code == 2, result.output
        assert result.output.count("\n") == 1 and "nmig: error:" in result.output and "projects[0].folder" in result.output


def test_inspect_summarises_every_project(root: Path) -> None:
    result = invoke("inspect", str(root), "--check")
    assert result.exit_code == 0, result.output
    for name in PROJECTS:
        assert f"== acme/{name} in {name}/ ==" in result.output
    assert "total: 3 project(s), 6 entities, 0 incomplete, 0 unreadable, 0 problem(s)" in result.output
    as_json = json.loads(invoke("inspect", str(root), "--json").output)
    assert [p["project"] for p in as_json["projects"]] == [f"acme/{n}" for n in PROJECTS]
    assert invoke("inspect", str(root), "VIS-1").exit_code == 2


@pytest.mark.slow
def test_import_and_verify_a_root_with_default_naming_and_a_map(root: Path, tmp_path: Path) -> None:
    import neptune_query
    from neptune_query import runs as nq_runs

    from nmig.emulators.neptune3 import serve_neptune3

    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        token = target.api_token
        mapping = tmp_path / "map.txt"
        mapping.write_text("acme/audio=demo/sound\n")
        result = invoke("import", str(root), "--project", "demo", "--project-map", str(mapping), "--api-token", token, "--max-workers", "4")
        assert result.exit_code == 0, result.output
        assert "acme/audio -> demo/sound: 2 run(s) imported into demo/sound" in result.output
        assert "acme/vision -> demo/vision: 2 run(s) imported into demo/vision" in result.output
        assert "3 project(s) of" in result.output and "3 complete, 0 with failures; 6 run(s) imported" in result.output
        neptune_query.set_api_token(token)
        for project, key in (("demo/sound", "AUD"), ("demo/text-nlp", "TEX"), ("demo/vision", "VIS")):
            assert {f"{key}-1", f"{key}-2"} <= set(nq_runs.list_runs(project=project))
        # every project's state and report stay in its own bundle
        assert (root / "audio" / "import-state.demo__sound.json").is_file()

        report = tmp_path / "verify.json"
        verified = invoke("verify", str(root), "--project", "demo", "--project-map", "acme/audio=demo/sound",
                          "--api-token", token, "--report", str(report), "--quiet")
        assert verified.exit_code == 0, verified.output
        assert "== acme/audio -> demo/sound ==" in verified.output and "All 3 projects match." in verified.output
        assert json.loads(report.read_text())["ok"] is True
        # without the map, audio is looked for under its own name, where nothing was imported
        unmapped = invoke("verify", str(root), "--project", "demo", "--api-token", token, "--quiet")
        assert unmapped.exit_code == 1
        assert "acme/audio -> demo/audio: FAILED" in unmapped.output or "acme/audio -> demo/audio: DIFFERENCES" in unmapped.output
        assert "acme/vision -> demo/vision: OK" in unmapped.output

        again = invoke("import", str(root), "--project", "demo", "--project-map", str(mapping), "--api-token", token, "--quiet")
        assert again.exit_code == 0 and "0 run(s) imported into demo/vision; 2 already imported" in again.output


@pytest.mark.slow
def test_migrate_a_workspace_pipelines_each_project_into_its_target(legacy: EmulatorInfo, tmp_path: Path) -> None:
    import neptune_query
    from neptune_query import runs as nq_runs

    from nmig.emulators.neptune3 import serve_neptune3

    out = tmp_path / "root"
    with serve_neptune3(data_dir=tmp_path / "n3") as target:
        token = target.api_token
        common = ("--workspace", "acme", "--out", str(out), "--legacy-token", legacy.api_token, "--api-token", token)
        wrong = invoke("migrate", *common, "--to", "demo/one")
        assert wrong.exit_code == 2 and wrong.output.count("\n") == 1 and "--to names a 3.x workspace" in wrong.output
        stray = invoke("migrate", "--from", "acme/vision", "--to", "demo/vision", "--out", str(tmp_path / "b"),
                       "--legacy-token", legacy.api_token, "--api-token", token, "--projects", "vision")
        assert stray.exit_code == 2 and "pass --workspace WS" in stray.output

        result = invoke("migrate", *common, "--to", "demo", "--projects", "audio|vision", "--project-map", "acme/audio=demo/sound",
                        "--max-workers", "4")
        assert result.exit_code == 0, result.output
        assert f"acme/audio -> demo/sound (bundle {out / 'audio'}): " in result.output
        assert f"acme/vision -> demo/vision (bundle {out / 'vision'}): " in result.output
        assert "workspace acme: 2 project(s), 2 complete, 0 with failures; 4 run(s) imported" in result.output
        assert [p.project for p in read_root(out).projects] == ["audio", "vision"]  # the root export --workspace writes
        neptune_query.set_api_token(token)
        for project, key in (("demo/sound", "AUD"), ("demo/vision", "VIS")):
            assert set(nq_runs.list_runs(project=project)) == {f"{key}-1", f"{key}-2", "nmig-legacy-project"}

        verified = invoke("verify", str(out), "--project", "demo", "--project-map", "acme/audio=demo/sound", "--api-token", token, "--quiet")
        assert verified.exit_code == 0 and "All 2 projects match." in verified.output, verified.output
        again = invoke("migrate", *common, "--to", "demo", "--projects", "audio|vision", "--project-map", "acme/audio=demo/sound", "--quiet")
        assert again.exit_code == 0, again.output
        assert "0 run(s) imported" in again.output
