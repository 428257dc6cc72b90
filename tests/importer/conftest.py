"""Fixtures for the importer tests: a 3.x emulator per module, hand-made bundles, the CLI in-process, and
neptune-query pointed at the emulator (the only way tests read the target)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from nmig.emulators.http import EmulatorInfo
from nmig.emulators.neptune3 import serve_neptune3


@pytest.fixture(scope="module")
def neptune3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    with serve_neptune3(data_dir=tmp_path_factory.mktemp("neptune3"), multipart_part_size=256 * 1024) as info:
        yield info


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """`run_cli("import", ...)`: the CLI in-process; returns click's result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from nmig.cli import main

    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    monkeypatch.chdir(tmp_path)  # neptune-scale's default .neptune folder never lands in the repo

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run


@pytest.fixture
def nq(neptune3: EmulatorInfo) -> Any:
    """neptune_query.runs, authenticated against the emulator."""
    import neptune_query
    from neptune_query import runs

    neptune_query.set_api_token(neptune3.api_token)
    return runs


