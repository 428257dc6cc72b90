"""Fixtures of the tamper suite: one bundle exported by `nmig export` from the legacy emulator's all-types
fixture, copies of it tampered with the way an attacker would (COMPLETE re-signed to match), a 3.x emulator,
and a guard that fails the run loudly instead of letting a case hang."""

from __future__ import annotations

import faulthandler
import hashlib
import json
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators.http import EmulatorInfo

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"
# Every run of the exported fixture and its 3.x run id.
TARGETS = {"AT-1": "custom-atoms-001", "AT-2": "AT-2", "AT-3": "custom-files-003"}
# Seconds any one command of a case may take before the whole test process is stopped with a traceback of
# every thread (a hang must never pass, nor block CI for hours). Generous: the machine is shared.
CASE_LIMIT_S = 120

# Every path Python opened by name while a case ran ("open" audit events; pyarrow and zstandard read
# through Python file objects, so their opens are seen here too). Opens relative to a folder descriptor
# (safeio) name one component and never leave the bundle.
OPENED: list[str] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "open" and args and isinstance(args[0], (str, bytes)):
        OPENED.append(args[0] if isinstance(args[0], str) else args[0].decode(errors="replace"))


sys.addaudithook(_audit)


@contextmanager
def time_limit(seconds: float = CASE_LIMIT_S) -> Iterator[None]:
    faulthandler.dump_traceback_later(seconds, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


def resign(run_dir: Path) -> None:
    """COMPLETE rewritten over whatever regular files the folder now holds, as an attacker would."""
    checksums = {}
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).as_posix()
        if rel == "COMPLETE" or path.is_symlink() or not path.is_file():
            continue
        checksums[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    (run_dir / "COMPLETE").write_text(json.dumps({"sha256": checksums}))


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.legacy import serve_legacy

    bundle = tmp_path_factory.mktemp("pristine") / "bundle"
    with serve_legacy(str(FIXTURE)) as legacy:
        result = CliRunner().invoke(
            main, ["export", "--project", "acme/all-types", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet"]
        )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (bundle / "runs").iterdir()) == sorted(TARGETS)
    return bundle


@pytest.fixture(scope="module")
def neptune3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorInfo]:
    from nmig.emulators.neptune3 import serve_neptune3

    with serve_neptune3(data_dir=tmp_path_factory.mktemp("neptune3")) as info:
        yield info


@pytest.fixture
def copy_bundle(pristine: Path, tmp_path: Path) -> Callable[[], Path]:
    def copy() -> Path:
        out = tmp_path / "bundle"
        shutil.copytree(pristine, out, symlinks=True)
        return out

    return copy


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Any]:
    """`run_cli("import", ...)`: the CLI in-process under the case's time limit; click's result."""
    from click.testing import CliRunner

    from nmig.cli import main

    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    monkeypatch.delenv("NEPTUNE_PROJECT", raising=False)
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> Any:
        with time_limit():
            return CliRunner().invoke(main, list(args), catch_exceptions=True)

    return run


@pytest.fixture
def nq(neptune3: EmulatorInfo) -> Any:
    """neptune_query.runs, authenticated against the emulator (the only way the suite reads the target)."""
    import neptune_query
    from neptune_query import runs

    neptune_query.set_api_token(neptune3.api_token)
    return runs
