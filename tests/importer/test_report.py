"""The import report's cases are a closed set of typed data, docs/import-report.md is generated from them, and
verify sorts a report's items by that set alone."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from nmig.importer import report
from nmig.importer.report import CASES, CaseKind, Event, read_items, report_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_docs_import_report_is_generated_from_the_cases() -> None:
    assert (ROOT / "docs" / "import-report.md").read_text(encoding="utf-8") == report_markdown()


def test_every_case_is_typed_once() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))
    assert {case.kind for case in CASES} == set(CaseKind)
    assert all(case.meaning and case.source for case in CASES)


def test_an_event_outside_the_set_cannot_be_made() -> None:
    assert Event("R-1", "a", "path_shortened", "x").to_json()["case"] == "path_shortened"
    with pytest.raises(ValueError, match="not an import report case"):
        Event("R-1", "a", "shortened a bit", "x")


def test_every_case_the_code_names_is_in_the_set() -> None:
    """Each case string the importer passes to an Event or yields as a limits adjustment is a known case."""
    named: set[str] = set()
    for module in (ROOT / "nmig" / "importer").glob("*.py"):
        text = module.read_text(encoding="utf-8")
        named |= set(re.findall(r"Event\(\s*[^,()]+, [^,()]+, \"([a-z_]+)\"", text))
        named |= set(re.findall(r"_event\(\s*[^,()]+, \"([a-z_]+)\"", text))
        named |= set(re.findall(r"^\s+\"([a-z_]+)\",\n\s+f\"", text, re.M))  # limits: yield ("case", f"...")
    assert named, "the patterns found no case at all"
    assert named <= set(report.CASE_BY_NAME), named - set(report.CASE_BY_NAME)


def test_verify_takes_only_adjustments_as_expected(tmp_path: Path) -> None:
    path = tmp_path / "import-report.json"
    items = [
        {"run": "R-1", "path": "a", "case": "path_shortened", "detail": "cut"},
        {"run": "R-1", "path": "b", "case": "failed", "detail": "boom"},
        {"run": "R-1", "path": "", "case": "resumed", "detail": "resumed"},
        {"run": "R-1", "path": "c", "case": "shortened a bit", "detail": "free text"},
    ]
    path.write_text(json.dumps({"format": report.REPORT_FORMAT, "items": items}), encoding="utf-8")
    found = read_items(path)
    assert [i["case"] for i in found.adjusted["R-1"]] == ["path_shortened"]
    assert found.problems["R-1"] == ["b: failed: boom", "c: shortened a bit: free text"]
    assert read_items(tmp_path / "none.json") == report.ReportItems({}, {})


def test_earlier_items_of_an_imported_run(tmp_path: Path) -> None:
    earlier = {
        "runs": {"imported": ["R-1"], "failed": ["R-2"]},
        "items": [
            {"run": "R-1", "path": "a", "case": "path_shortened", "detail": "cut"},
            {"run": "R-1", "path": "", "case": "already_imported", "detail": "skipped"},
            {"run": "R-1", "path": "", "case": "no such case", "detail": "?"},
            {"run": "R-2", "path": "b", "case": "failed", "detail": "boom"},
        ],
    }
    assert report.earlier_items(earlier, "R-1") == [Event("R-1", "a", "path_shortened", "cut")]
    assert report.earlier_items(earlier, "R-2") is None
