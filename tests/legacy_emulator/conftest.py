"""Fixtures for driving the unmodified `neptune` client against the legacy emulator."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators.http import EmulatorInfo
from nmig.emulators.legacy import LegacyEmulator, legacy_fault_plan
from nmig.loopback import LOOPBACK_CLIENT_ENV

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"


@dataclass
class Served:
    info: EmulatorInfo
    emulator: LegacyEmulator

    @property
    def token(self) -> str:
        return self.info.api_token

    def __repr__(self) -> str:  # keeps the API token out of assertion messages
        return f"Served(url={self.info.url!r})"


@contextlib.contextmanager
def client_env(workdir: Path) -> Iterator[None]:
    """The client process settings for a loopback server, and a scratch cwd for the client's .neptune folder."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in LOOPBACK_CLIENT_ENV.items():
            patch.setenv(name, value)
        patch.chdir(workdir)
        yield


@contextlib.contextmanager
def serve(fixture: Any, workdir: Path, *, token_ttl: float = 3600, **faults: Any) -> Iterator[Served]:
    emulator = LegacyEmulator(fixture, token_ttl=token_ttl)
    with client_env(workdir), emulator.serve(legacy_fault_plan(**faults)) as info:
        yield Served(info, emulator)


@pytest.fixture(scope="module")
def all_types(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(ALL_TYPES, tmp_path_factory.mktemp("legacy-client")) as served:
        yield served


@pytest.fixture
def legacy_server(tmp_path: Path) -> Any:
    """A factory: `with legacy_server(fixture, token_ttl=..., fail_rate=...) as served:` (cwd = tmp_path)."""

    def start(fixture: Any, **options: Any) -> contextlib.AbstractContextManager[Served]:
        return serve(fixture, tmp_path, **options)

    return start
