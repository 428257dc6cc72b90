"""`nmig demo` end to end: both emulators, the sample project, the real commands, a green verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nmig.cli import main


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_demo_ends_green(tmp_path: Path) -> None:
    keep = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--keep", str(keep)])
    assert result.exit_code == 0, result.output[-3000:]
    out = result.output
    for step in ("$ nmig export", "$ nmig inspect", "$ nmig import", "$ nmig verify"):
        assert step in out
    assert "verify: all green" in out
    # the side-by-side table: source, bundle and target agree on every row
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["source", "bundle", "target"])
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1 : header + 6]}
    assert set(rows) == {"runs", "models", "points", "files", "bytes"}
    assert all(len(set(values)) == 1 and values[0] != "?" for values in rows.values()), rows
    assert rows["runs"][0] == "12" and int(rows["points"][0].replace(",", "")) > 12 * 40_000
    assert rows["models"][0] == "4"  # the sample model and its three versions, imported as runs
    report = json.loads((keep / "verify-report.json").read_text(encoding="utf-8"))
    assert report["ok"] is True and report["found_totals"] == report["expected_totals"]
    assert (keep / "bundle" / "export.json").is_file()
    assert f"nb.read_runs('{keep / 'bundle'}')" in out

    import nmig.schema as nb

    loss = nb.read_float_series(keep / "bundle", path="train/loss")
    assert len(loss) == 12 * 20_000


def test_demo_refuses_a_non_empty_keep_folder(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path)])
    assert result.exit_code == 2 and "not empty" in result.output and "Traceback" not in result.output
