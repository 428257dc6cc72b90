"""`nmig inspect`: summary, per-run detail, --check and --json."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nmig.cli import main
from nmig.schema import EntityWriter


def _inspect(*args: str):
    return CliRunner().invoke(main, ["inspect", *args])


def test_summary_counts_everything(sample_bundle: Path, write_run) -> None:
    write_run(sample_bundle, "VIS-2")
    with EntityWriter(sample_bundle, "run", "VIS-3") as run:
        run.error("metrics/loss", "HTTP 500 after 5 attempts")
    with EntityWriter(sample_bundle, "model", "PROJ-MOD") as model:
        model.add_atom("sys/name", "string", "m")
    result = _inspect(str(sample_bundle))
    assert result.exit_code == 0, result.output
    assert "entities: 3 runs (2 complete), 1 models (1 complete), 0 model versions (0 complete)" in result.output
    assert "series points: 8 float, 4 string, 4 file" in result.output
    assert "skipped items: 2" in result.output and "errors: 1" in result.output
    assert "run VIS-3: export failed for 1 item(s): metrics/loss: HTTP 500 after 5 attempts" in result.output
    data = json.loads(_inspect(str(sample_bundle), "--json").output)
    assert data["attributes_by_type"]["floatSeries"] == 6 and data["attributes_by_type"]["string"] == 3
    assert data["files"]["count"] == 10  # 5 distinct contents per sample run
    assert data["files"]["original_bytes"] == 2 * (12 + 7 + 6 + 6 + 6)
    assert data["files"]["stored_bytes"] > 0
    assert [i["sys_id"] for i in data["incomplete"]] == ["VIS-3"]
    checked = _inspect(str(sample_bundle), "--check")
    assert checked.exit_code == 1
    assert "check: every checksum and file verified, no problems" in checked.output
    assert "check failed: 0 problem(s), 1 incomplete" in checked.output


def test_check_finds_damage_and_run_detail(sample_bundle: Path) -> None:
    detail = _inspect(str(sample_bundle), "VIS-1")
    assert detail.exit_code == 0
    assert "state: complete" in detail.output and "params/nan" in detail.output and "NaN" in detail.output
    assert _inspect(str(sample_bundle), "--check").exit_code == 0
    folder = sample_bundle / "runs" / "VIS-1"
    stored = next((folder / "files").iterdir())
    stored.write_bytes(stored.read_bytes()[:-2])
    checked = _inspect(str(sample_bundle), "VIS-1", "--check", "--json")
    assert checked.exit_code == 1
    report = json.loads(checked.output[: checked.output.rindex("}") + 1])
    assert any("does not match its checksum" in p for p in report["problems"])
    assert "1 problem(s)" in checked.output or "problem(s)" in checked.output


def test_bad_input_is_one_line(tmp_path: Path, sample_bundle: Path) -> None:
    missing = _inspect(str(tmp_path / "missing"))
    assert missing.exit_code == 2 and "no such folder" in missing.output and "Traceback" not in missing.output
    unknown = _inspect(str(sample_bundle), "VIS-404")
    assert unknown.exit_code == 2 and "no run, model or model version 'VIS-404'" in unknown.output
    info = json.loads((sample_bundle / "export.json").read_text())
    (sample_bundle / "export.json").write_text(json.dumps({**info, "format_version": "3.1"}))
    newer = _inspect(str(sample_bundle))
    assert newer.exit_code == 2 and "newer than this nmig supports" in newer.output
    assert len(newer.output.strip().splitlines()) == 1


def test_damaged_entity_is_reported_and_the_rest_summarised(sample_bundle: Path, write_run) -> None:
    write_run(sample_bundle, "VIS-2")
    (sample_bundle / "runs" / "VIS-2" / "manifest.json").write_text("[1, 2")
    (sample_bundle / "runs" / "bad..name").mkdir()
    (sample_bundle / "runs" / ".hidden").mkdir()
    result = _inspect(str(sample_bundle), "--check")
    assert result.exit_code == 1
    assert "entities: 3 runs (1 complete)" in result.output  # bad..name is a plain id: an empty entity
    assert "run bad..name: manifest.json is missing" in result.output
    assert "run VIS-2: manifest.json is unreadable" in result.output
    assert "runs/.hidden: not an entity folder" in result.output
    assert "series points: 4 float" in result.output  # VIS-1 still counted


def test_an_invalid_file_reference_counts_as_no_file_and_fails_the_check(sample_bundle: Path) -> None:
    folder = sample_bundle / "runs" / "VIS-1"
    (folder / "COMPLETE").unlink()  # a hand-edited entity: no checksums
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["attributes"] += [
        {"path": "evil", "type": "file", "file": {"hash": "../../etc/passwd", "size": 99, "name": "x", "ext": ""}},
        {"path": "bare", "type": "file"},
    ]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    data = json.loads(_inspect(str(sample_bundle), "--json").output)
    assert data["files"]["count"] == 5 and data["files"]["original_bytes"] == 12 + 7 + 6 + 6 + 6
    checked = _inspect(str(sample_bundle), "--check")
    assert checked.exit_code == 1
    # the manifest's schema names each bad reference (a hash is 64 hex digits; a file attribute has one)
    assert "attribute 'evil'.file.hash is '../../etc/passwd': not of the form" in checked.output
    assert "attribute 'bare' has no 'file'" in checked.output
