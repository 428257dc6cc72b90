"""The feed `nmig migrate` gives `run_import`: runs as the export completes them, each once, and the end only
once the export has ended and every run it completed was handed over (on plain folders and a stand-in child)."""

from __future__ import annotations

from pathlib import Path

from nmig.migrate import ExportFeed
from nmig.schema.format import COMPLETE, KIND_FOLDERS


class _Child:
    """Stands in for the export child process: running until `end()`."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def end(self) -> None:
        self.returncode = 0


def _run(out: Path, sys_id: str, complete: bool) -> None:
    folder = out / KIND_FOLDERS["run"] / sys_id
    folder.mkdir(parents=True, exist_ok=True)
    if complete:
        (folder / COMPLETE).write_text("{}", encoding="utf-8")


def test_runs_are_handed_once_as_they_complete(tmp_path: Path) -> None:
    child = _Child()
    feed = ExportFeed(tmp_path, child)  # type: ignore[arg-type]
    assert feed.poll() == ([], False)  # nothing exported yet
    _run(tmp_path, "R-2", complete=True)
    _run(tmp_path, "R-1", complete=False)  # still being written
    assert feed.poll() == (["R-2"], False)
    assert feed.poll() == ([], False)
    _run(tmp_path, "R-1", complete=True)
    _run(tmp_path, "R-3", complete=True)
    child.end()
    # the export ended: what it completed last still comes, with the end
    assert feed.poll() == (["R-1", "R-3"], True)
    assert feed.handed == 3


def test_a_run_completed_as_the_export_ends_is_not_lost(tmp_path: Path) -> None:
    class _EndsWhileAsked(_Child):
        """Running when asked; right after the answer, the export completes one last run and ends."""

        def poll(self) -> int | None:
            answer = self.returncode
            if answer is None:
                _run(tmp_path, "LATE-1", complete=True)
                self.end()
            return answer

    feed = ExportFeed(tmp_path, _EndsWhileAsked())  # type: ignore[arg-type]
    # the export is asked before the folder is read, so the last run is seen before the end is announced
    assert feed.poll() == (["LATE-1"], False)
    assert feed.poll() == ([], True)
