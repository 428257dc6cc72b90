"""The smaller items of the untrusted-bundle work: export's lock on --out, its log's final line, its exit status
for a selection that matches nothing, and names with control characters shown escaped."""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import FIXTURE, resign  # noqa: E402

from nmig.emulators.http import EmulatorInfo  # noqa: E402


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    from nmig.emulators.legacy import serve_legacy

    with serve_legacy(str(FIXTURE)) as info:
        yield info


def _export(run_cli: Any, legacy: EmulatorInfo, out: Path, *more: str) -> Any:
    return run_cli("export", "--project", "acme/all-types", "--out", str(out), "--api-token", legacy.api_token, "--quiet", *more)


def test_a_second_export_into_the_same_out_is_refused_while_the_first_runs(
    legacy: EmulatorInfo, run_cli: Any, tmp_path: Path
) -> None:
    from nmig.atomic import FolderLock
    from nmig.exporter.export import EXPORT_LOCK

    out = tmp_path / "bundle"
    out.mkdir()
    with FolderLock(out / EXPORT_LOCK, "held by the test"):  # what a running export holds
        result = _export(run_cli, legacy, out)
        assert result.exit_code == 2
        assert result.output.strip() == f"nmig: error: another nmig export is writing to {out}; wait for it to finish, or use another --out"
        assert not (out / "runs").exists()
    result = _export(run_cli, legacy, out)  # released: the export runs
    assert result.exit_code == 0, result.output


def test_export_log_ends_with_the_true_totals(legacy: EmulatorInfo, run_cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = _export(run_cli, legacy, out)
    assert result.exit_code == 0, result.output
    final = (out / "export.log").read_text().splitlines()[-1]
    shown = re.search(r"; ([\d,]+) series points, ([\d,]+) file bytes in ([\d.]+) s", final)
    assert shown is not None, final
    console = re.search(r"; ([\d,]+) series points, ([\d,]+) file bytes in ([\d.]+) s", result.output)
    assert console is not None and shown.groups()[:2] == console.groups()[:2]
    assert int(shown.group(1).replace(",", "")) > 0 and int(shown.group(2).replace(",", "")) > 0
    assert float(shown.group(3)) > 0


def test_export_and_import_agree_on_a_selection_matching_nothing(
    legacy: EmulatorInfo, pristine: Path, run_cli: Any, tmp_path: Path
) -> None:
    exported = _export(run_cli, legacy, tmp_path / "bundle", "--runs", "NOPE")
    imported = run_cli("import", str(pristine), "--project", "demo/nope", "--runs", "NOPE", "--api-token", "x", "--dry-run")
    assert exported.exit_code == imported.exit_code == 2
    assert "--runs NOPE matches no run" in exported.output and "--runs NOPE matches no run" in imported.output


def test_control_characters_in_a_custom_run_id_are_printed_escaped(
    copy_bundle: Any, run_cli: Any, neptune3: EmulatorInfo
) -> None:
    bundle = copy_bundle()
    run_dir = bundle / "runs" / "AT-2"
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["custom_run_id"] = "evil\x1b[2J\x1b]0;owned\x07\r\nline\u202e"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    resign(run_dir)
    for args in (("inspect", str(bundle), "AT-2"), ("inspect", str(bundle), "--check"),
                 ("import", str(bundle), "--dry-run", "--project", "demo/controls"),
                 ("import", str(bundle), "--project", "demo/controls", "--api-token", neptune3.api_token, "--quiet"),
                 ("verify", str(bundle), "--project", "demo/controls", "--api-token", neptune3.api_token, "--quiet")):
        result = run_cli(*args)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", result.output), (args, result.output)
    shutil.rmtree(bundle)
