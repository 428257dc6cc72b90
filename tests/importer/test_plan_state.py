"""Planning helpers and the state file on plain data."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from nmig.errors import NmigError
from nmig.importer import plan as planning
from nmig.importer.report import report_path_for
from nmig.importer.state import FAILED, IMPORTED, STARTED, ImportState, default_state_path


def test_git_configs_from_legacy_properties() -> None:
    configs = planning._git_configs(
        {
            "commit": {"commitId": "abc", "message": "m", "authorName": "A", "authorEmail": "a@x", "commitDate": "2023-02-28T17:45:12.000Z"},
            "currentBranch": "main",
            "repositoryDirty": False,
            "remotes": ["git@x:a.git", "https://y/b.git"],
        }
    )
    assert configs == {
        "source_code/commit/commit_id": "abc",
        "source_code/commit/message": "m",
        "source_code/commit/author_name": "A",
        "source_code/commit/author_email": "a@x",
        "source_code/commit/commit_date": dt.datetime(2023, 2, 28, 17, 45, 12, tzinfo=dt.timezone.utc),
        "source_code/branch": "main",
        "source_code/dirty": False,
        "source_code/remote/origin": "git@x:a.git",
        "source_code/remote/remote_2": "https://y/b.git",
    }
    assert planning._git_configs("not a dict") == {}


@pytest.mark.parametrize(
    ("entry", "safe"),
    [("src/a.py", True), ("../x", False), ("/abs", False), ("a//b", False), ("a/./b", False), ("", False), ("a\\b", False), ("ü n/ï", True)],
)
def test_fileset_entry_names(entry: str, safe: bool) -> None:
    assert (planning._safe_entry(entry) is not None) is safe


def test_file_names_for_destinations_are_plain() -> None:
    assert planning.safe_file_name("../../etc/passwd", None, "f") == "passwd"
    assert planning.safe_file_name("my report ü", "md", "f") == "my_report.md"
    assert planning.safe_file_name("w.bin", "bin", "f") == "w.bin"
    assert planning.safe_file_name(None, None, "fallback") == "fallback"
    assert "/" not in planning.safe_file_name("a/b/c", "x", "f")


def test_state_file_round_trip_and_refusals(tmp_path: Path) -> None:
    path = default_state_path(tmp_path, "ws/proj")
    assert path.name == "import-state.ws__proj.json"
    assert report_path_for(path).name == "import-report.ws__proj.json"
    assert report_path_for(tmp_path / "mine.json").name == "mine.report.json"
    state = ImportState(path, "ws/proj", tmp_path)
    state.mark("R-1", STARTED, "r1")
    state.mark("R-1", IMPORTED, "r1")
    again = ImportState(path, "ws/proj", tmp_path)
    assert again.status("R-1") == IMPORTED and again.runs["R-1"].attempts == 1
    with pytest.raises(NmigError, match="belongs to project"):
        ImportState(path, "ws/other", tmp_path)
    path.local.write_text("{broken")
    with pytest.raises(NmigError, match="unreadable"):
        ImportState(path, "ws/proj", tmp_path)
    path.local.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(NmigError, match="not an nmig import state file"):
        ImportState(path, "ws/proj", tmp_path)


def test_every_action_has_its_planning_handler() -> None:
    from nmig.importer.rules import Action

    assert set(planning.HANDLERS) == set(Action)


def test_marks_go_to_a_journal_in_constant_time_and_a_new_state_file_ignores_an_old_journal(tmp_path: Path) -> None:
    from nmig.importer.state import journal_folder

    path = default_state_path(tmp_path, "ws/proj")
    state = ImportState(path, "ws/proj", tmp_path)
    state.mark("R-0", STARTED, "r0")  # the first mark writes the file itself: the other shards look for it
    written = path.local.stat().st_mtime_ns
    for i in range(1, 200):
        state.mark(f"R-{i}", STARTED, f"r{i}")
        state.mark(f"R-{i}", IMPORTED, f"r{i}")
    assert path.local.stat().st_mtime_ns == written  # not rewritten per mark: one small entry per run instead
    journal = journal_folder(path).local
    assert len(list(journal.iterdir())) == 199
    # a reader mid-import (a resume after a kill, another shard) sees every mark
    assert sum(ImportState(path, "ws/proj", tmp_path).status(f"R-{i}") == IMPORTED for i in range(200)) == 199
    assert not journal.exists()  # that reader compacted it into the file
    state = ImportState(path, "ws/proj", tmp_path)
    state.mark("R-0", IMPORTED, "r0")
    state.finish()
    assert not journal.exists() and json.loads(path.local.read_text())["runs"]["R-0"]["status"] == IMPORTED
    # deleting the state file to start over also disowns a journal an import left beside it
    state = ImportState(path, "ws/proj", tmp_path)
    state.mark("R-5", FAILED, "r5")
    path.local.unlink()
    fresh = ImportState(path, "ws/proj", tmp_path)
    assert fresh.status("R-5") is None and not journal.exists()
