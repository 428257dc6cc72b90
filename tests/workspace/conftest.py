"""Fixtures for the workspace-root tests: a legacy workspace of three small projects, served by the legacy
emulator, and its whole export (the helpers live in workspace_helpers.py next to this file)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from workspace_helpers import invoke, workspace_fixture  # noqa: E402

from nmig.emulators.http import EmulatorInfo  # noqa: E402


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    from nmig.emulators.legacy import serve_legacy

    with serve_legacy(workspace_fixture()) as info:
        yield info


@pytest.fixture(scope="module")
def root(legacy: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole workspace exported into one root."""
    out = tmp_path_factory.mktemp("workspace") / "root"
    result = invoke("export", "--workspace", "acme", "--out", str(out), "--api-token", legacy.api_token, "--quiet")
    assert result.exit_code == 0, result.output
    return out
