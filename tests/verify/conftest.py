"""Fixtures for the verify tests: one small migration (legacy emulator -> `nmig export` -> `nmig import` into a
3.x emulator), whose stopped 3.x data folder each test copies, alters and serves again."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

PROJECT = "demo/vision"


@dataclass
class Migrated:
    bundle: Path
    data_dir: Path  # the 3.x emulator's folder right after the import (server stopped)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Migrated:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.sample import sample_fixture

    base = tmp_path_factory.mktemp("migrated")
    bundle, data_dir = base / "bundle", base / "neptune3"
    with serve_legacy(sample_fixture(runs=3, points=400)) as legacy:
        result = CliRunner().invoke(
            main, ["export", "--project", "acme/vision", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet"]
        )
    assert result.exit_code == 0, result.output
    with serve_neptune3(data_dir=data_dir) as target:
        result = CliRunner().invoke(main, ["import", str(bundle), "--project", PROJECT, "--api-token", target.api_token, "--quiet"])
    assert result.exit_code == 0, result.output
    return Migrated(bundle, data_dir)


@dataclass
class VerifyRun:
    exit_code: int
    output: str
    report: dict[str, Any]

    def differences(self) -> list[dict[str, Any]]:
        return [d for run in self.report["runs"] for d in run["differences"]]

    def differing(self) -> list[tuple[str, str]]:
        """(path, what) of every difference, once verify failed as it must on an altered target (exit 1)."""
        assert self.exit_code == 1, self.output
        return [(d["path"], d["what"]) for d in self.differences()]


@pytest.fixture
def verify_altered(
    migrated: Migrated, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., VerifyRun]:
    """`verify_altered(damage, args=[...])`: a copy of the migrated target, changed by `damage(Damage)` (the 3.x
    emulator's test API, nmig.emulators.neptune3.testing), served again and checked with `nmig verify`."""
    import json

    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.testing import Damage

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)

    def run(
        damage: Callable[[Damage], None] | None = None,
        args: list[str] = (),  # type: ignore[assignment]
        **faults: Any,
    ) -> VerifyRun:
        data_dir = tmp_path / "neptune3"
        shutil.rmtree(data_dir, ignore_errors=True)  # a test may verify more than once
        shutil.copytree(migrated.data_dir, data_dir)
        if damage is not None:
            with Damage(data_dir, PROJECT) as stopped_target:
                damage(stopped_target)
        report = tmp_path / "verify.json"
        with serve_neptune3(data_dir=data_dir, **faults) as target:
            result = CliRunner().invoke(
                main,
                ["verify", str(migrated.bundle), "--project", PROJECT, "--api-token", target.api_token, "--quiet",
                 "--report", str(report), *args],
            )
        doc = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
        return VerifyRun(result.exit_code, result.output, doc)

    return run


@pytest.fixture
def target_ids(migrated: Migrated) -> Iterator[list[str]]:
    """The 3.x run ids of the migrated runs, in legacy id order."""
    from nmig.importer.plan import plan_run
    from nmig.schema import Bundle

    yield [plan_run(e).target_run_id for e in Bundle(migrated.bundle).entities("run")]
