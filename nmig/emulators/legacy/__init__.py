"""Loopback emulator of the Neptune 2.x (legacy) service that the unmodified `neptune` 1.x client reads from.

Public API: `serve_legacy(fixture, ...)` (context manager yielding an `EmulatorInfo`), `load_fixture(...)`,
`LegacyEmulator` (the server object, with request `stats` for tests), `FixtureError`.
"""

from nmig.emulators.legacy.fixture import FixtureError, LegacyFixture, load_fixture
from nmig.emulators.legacy.server import (
    CLIENT_UNRETRIED_PATHS,
    LegacyEmulator,
    legacy_fault_plan,
    serve_legacy,
)

__all__ = [
    "CLIENT_UNRETRIED_PATHS",
    "FixtureError",
    "LegacyEmulator",
    "LegacyFixture",
    "legacy_fault_plan",
    "load_fixture",
    "serve_legacy",
]
