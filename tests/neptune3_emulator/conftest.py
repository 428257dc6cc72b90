"""Fixtures for the Neptune 3.x emulator tests: a served emulator, real neptune_scale.Run instances, the store.

Every Run starts a sync process: the `open_run` factory closes each Run it made at the end of the test.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from nmig.emulators.http import EmulatorInfo
from nmig.emulators.neptune3 import serve_neptune3
from nmig.emulators.neptune3.store import DB_FILE

PROJECT = "demo/write-path"


@dataclass
class Emulator:
    info: EmulatorInfo
    data_dir: Path

    def db(self) -> sqlite3.Connection:
        """A read-only view of what the emulator stored (committed data only)."""
        return sqlite3.connect(f"file:{self.data_dir / DB_FILE}?mode=ro", uri=True)


@dataclass
class Callbacks:
    """What the client reported through its callbacks."""

    errors: list[BaseException] = field(default_factory=list)
    warnings: list[BaseException] = field(default_factory=list)
    network: list[BaseException] = field(default_factory=list)

    def error(self, exc: BaseException, last_seen: float | None) -> None:
        self.errors.append(exc)

    def warning(self, exc: BaseException, last_seen: float | None) -> None:
        self.warnings.append(exc)

    def network_error(self, exc: BaseException, last_seen: float | None) -> None:
        self.network.append(exc)

    def kinds(self) -> list[str]:
        return [type(e).__name__ for e in self.errors]


@pytest.fixture(scope="module")
def neptune3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator per test module, with the project PROJECT; multipart above 256 KiB so tests stay small."""
    from neptune_scale.projects import create_project

    data_dir = tmp_path_factory.mktemp("neptune3-data")
    with serve_neptune3(data_dir=data_dir, multipart_part_size=256 * 1024) as info:
        create_project(PROJECT, api_token=info.api_token)
        yield Emulator(info, data_dir)


OpenRun = Callable[..., tuple[Any, Callbacks]]


@pytest.fixture
def open_run(tmp_path: Path) -> Iterator[OpenRun]:
    """`open_run(info, **run_kwargs) -> (Run, Callbacks)`; every Run is closed when the test ends."""
    from neptune_scale import Run

    runs: list[Any] = []

    def _open(info: EmulatorInfo, project: str = PROJECT, **kwargs: Any) -> tuple[Any, Callbacks]:
        callbacks = Callbacks()
        run = Run(
            project=project,
            api_token=info.api_token,
            log_directory=tmp_path / "neptune-scale",
            source_tracking_config=None,
            enable_console_log_capture=False,
            on_error_callback=callbacks.error,
            on_warning_callback=callbacks.warning,
            on_network_error_callback=callbacks.network_error,
            **kwargs,
        )
        runs.append(run)
        return run, callbacks

    yield _open
    for run in runs:
        with contextlib.suppress(Exception):
            run.close()


def run_pk(db: sqlite3.Connection, run_id: str, project: str = PROJECT) -> int:
    workspace, name = project.split("/")
    row = db.execute(
        "SELECT r.run_pk FROM runs r JOIN projects p USING (project_pk) WHERE p.workspace = ? AND p.name = ?"
        " AND r.run_id = ?",
        (workspace, name, run_id),
    ).fetchone()
    assert row is not None, f"run {run_id} not stored"
    return int(row[0])


def attributes(db: sqlite3.Connection, run_id: str, project: str = PROJECT) -> dict[str, tuple[str, Any]]:
    """{path: (type, value)}; string sets as sorted lists of members."""
    pk = run_pk(db, run_id, project)
    result: dict[str, tuple[str, Any]] = {}
    for attr_pk, path, kind, value in db.execute("SELECT attr_pk, path, type, value FROM attributes WHERE run_pk = ?", (pk,)):
        if kind == "string_set":
            value = sorted(m for (m,) in db.execute("SELECT member FROM string_set_members WHERE attr_pk = ?", (attr_pk,)))
        result[path] = (kind, value)
    return result


def points(db: sqlite3.Connection, run_id: str, path: str, project: str = PROJECT) -> list[tuple[int, int, int, Any]]:
    """[(step_whole, step_micro, ts_ms, value)] of one series, by step."""
    pk = run_pk(db, run_id, project)
    return list(
        db.execute(
            "SELECT p.step_whole, p.step_micro, p.ts_ms, p.value FROM points p JOIN attributes a USING (attr_pk)"
            " WHERE a.run_pk = ? AND a.path = ? ORDER BY p.step_whole, p.step_micro",
            (pk, path),
        )
    )


@pytest.fixture
def store_view() -> Any:
    """Helpers reading the store: `.attributes(db, run_id)`, `.points(db, run_id, path)`, `.run_pk(db, run_id)`."""

    return SimpleNamespace(attributes=attributes, points=points, run_pk=run_pk)
