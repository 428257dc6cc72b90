"""The root index (nmig-root.json) written and read back, and refused when tampered with; the pure rules of a
workspace: project selection, the worker budget, --project-map and target naming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nmig.errors import NmigError
from nmig.exporter.selection import ProjectMatcher
from nmig.importer.project import parse_project_map
from nmig.importer.workspace import target_projects
from nmig.schema import ROOT_INDEX, BundleError, RootProject, is_root, read_root, write_root
from nmig.workers import share_workers


def _root(tmp_path: Path) -> Path:
    write_root(tmp_path, "acme", [RootProject("vision", "vision"), RootProject("audio", "audio")], {"projects": None})
    return tmp_path


def test_an_index_reads_back_as_written(tmp_path: Path) -> None:
    root = read_root(_root(tmp_path))
    assert is_root(tmp_path)
    assert root.workspace == "acme"
    assert [(p.project, p.folder) for p in root.projects] == [("audio", "audio"), ("vision", "vision")]
    assert root.bundle_dir(root.projects[1]) == tmp_path / "vision"
    assert json.loads((tmp_path / ROOT_INDEX).read_text())["format"] == "nmig-root"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda d: d["projects"].append({"project": "evil", "folder": "a/elsewhere"}), "path separator"),
        (lambda d: d["projects"].append({"project": "evil", "folder": ".."}), "not a plain folder name"),
        (lambda d: d["projects"].append({"project": "copy", "folder": "VISION"}), "listed twice"),
        (lambda d: d.update(format_version="2.0"), "newer than this nmig supports"),
        (lambda d: d.update(format="nmig-bundle"), "is not an nmig-root document"),
        (lambda d: d.update(workspace="a/b"), "not a plain Neptune name"),
        (lambda d: d.update(projects={"vision": "vision"}), "projects must be a list"),
    ],
)
def test_a_tampered_index_is_refused(tmp_path: Path, change: object, said: str) -> None:
    index = _root(tmp_path) / ROOT_INDEX
    doc = json.loads(index.read_text())
    change(doc)  # type: ignore[operator]
    index.write_text(json.dumps(doc))
    with pytest.raises(BundleError, match=said):
        read_root(tmp_path)


def test_a_folder_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    root = _root(tmp_path / "root")
    (tmp_path / "other").mkdir()
    (root / "vision").symlink_to(tmp_path / "other")
    with pytest.raises(BundleError, match="symlink"):
        read_root(root)


def test_projects_are_chosen_by_full_matches() -> None:
    names = ["audio", "text-nlp", "vision", "vision-old"]
    assert [n for n in names if ProjectMatcher("vision.*", None).matches(n)] == ["vision", "vision-old"]
    assert [n for n in names if ProjectMatcher(None, "vis|text.*").matches(n)] == ["audio", "vision", "vision-old"]
    with pytest.raises(NmigError, match="--projects"):
        ProjectMatcher("(", None)


def test_the_worker_budget_is_never_exceeded() -> None:
    for workers in range(1, 17):
        for projects in range(1, 10):
            at_once, each = share_workers(workers, projects)
            assert 1 <= at_once <= projects and at_once * each <= workers
    assert share_workers(8, 3) == (3, 2)
    assert share_workers(4, 10) == (4, 1)


def test_project_map_pairs_and_files(tmp_path: Path) -> None:
    mapping = tmp_path / "map.txt"
    mapping.write_text("# legacy = target\nacme/audio = demo/sound\n\nacme/vision=demo/images\n")
    assert parse_project_map([str(mapping), "acme/text=demo/words"]) == {
        "acme/audio": "demo/sound", "acme/vision": "demo/images", "acme/text": "demo/words"}
    with pytest.raises(NmigError, match="expected LEGACY_WORKSPACE/PROJECT=TARGET_WORKSPACE/PROJECT"):
        parse_project_map(["acme=demo/x"])
    with pytest.raises(NmigError, match="mapped to both"):
        parse_project_map(["acme/a=demo/x", "acme/a=demo/y"])
    with pytest.raises(NmigError, match="neither SRC=DST nor a readable file"):
        parse_project_map([str(tmp_path / "missing.txt")])


def test_targets_follow_the_map_then_the_workspace(tmp_path: Path) -> None:
    root = read_root(_root(tmp_path))
    pairs = target_projects(root, "demo", {"acme/audio": "other/sound"})
    assert [(e.project, t) for e, t in pairs] == [("audio", "other/sound"), ("vision", "demo/vision")]
    with pytest.raises(NmigError, match="no target for acme/vision"):
        target_projects(root, None, {"acme/audio": "other/sound"})
    with pytest.raises(NmigError, match="a workspace root takes --project WORKSPACE"):
        target_projects(root, "demo/vision", {})
    with pytest.raises(NmigError, match="two legacy projects would go into demo/vision"):
        target_projects(root, "demo", {"acme/audio": "demo/vision"})
    with pytest.raises(NmigError, match="acme/nope, not in the root"):
        target_projects(root, "demo", {"acme/nope": "demo/x"})
