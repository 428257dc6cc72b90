"""Fixtures for the exporter tests; the helpers live in exporter_helpers.py next to this file."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from exporter_helpers import export, serving, standard_fixture  # noqa: E402

from nmig.emulators.http import EmulatorInfo  # noqa: E402


@pytest.fixture(scope="module")
def standard_server() -> Iterator[EmulatorInfo]:
    with serving(standard_fixture()) as info:
        yield info


@pytest.fixture(scope="module")
def clean_bundle(standard_server: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clean export of the standard fixture (trashed included), the reference for byte-identity tests."""
    out = tmp_path_factory.mktemp("clean") / "bundle"
    result = export(standard_server, out, include_trashed=True)
    assert not result.failed, result.failed
    return out


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    """Run `nmig ...` in-process with click's runner; returns the result (exit_code, stdout, stderr)."""
    from click.testing import CliRunner

    from nmig.cli import main

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
        monkeypatch.delenv("NEPTUNE_PROJECT", raising=False)
        return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)

    return run
