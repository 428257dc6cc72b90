"""The remapping rules on plain data, and docs/mapping.md kept in sync with them."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmig.importer.rules import NOT_IMPORTED_KINDS, Action, map_attribute, mapping_table_markdown


@pytest.mark.parametrize(
    ("path", "legacy_type", "action", "target"),
    [
        ("sys/name", "string", Action.RUN_NAME, "sys/name"),
        ("sys/description", "string", Action.DESCRIPTION, "sys/description"),
        ("sys/tags", "stringSet", Action.TAGS, "sys/tags"),
        ("sys/group_tags", "stringSet", Action.GROUP_TAGS, "sys/group_tags"),
        ("sys/state", "experimentState", Action.NOT_COPIED, ""),
        ("sys/running_time", "float", Action.FLOAT_SECONDS_CONFIG, "legacy_sys/running_time"),
        ("sys/monitoring_time", "int", Action.FLOAT_SECONDS_CONFIG, "legacy_sys/monitoring_time"),
        ("sys/size", "float", Action.INT_BYTES_CONFIG, "legacy_sys/size"),
        ("sys/id", "string", Action.CONFIG, "legacy_sys/id"),
        ("sys/custom_run_id", "string", Action.CONFIG, "legacy_sys/custom_run_id"),
        ("sys/creation_time", "datetime", Action.CONFIG, "legacy_sys/creation_time"),
        ("sys/owner", "string", Action.CONFIG, "legacy_sys/owner"),
        ("sys/failed", "bool", Action.CONFIG, "legacy_sys/failed"),
        ("sys/some_set", "stringSet", Action.STRING_SET_CONFIG, "legacy_sys/some_set"),
        ("monitoring/cpu", "floatSeries", Action.METRIC, "runtime/cpu"),
        ("monitoring/a1b2/stdout", "stringSeries", Action.STRING_SERIES, "runtime/a1b2/stdout"),
        ("params/lr", "float", Action.CONFIG, "params/lr"),
        ("params/n", "int", Action.CONFIG, "params/n"),
        ("params/flag", "bool", Action.CONFIG, "params/flag"),
        ("params/when", "datetime", Action.CONFIG, "params/when"),
        ("labels", "stringSet", Action.STRING_SET_CONFIG, "labels"),
        ("train/loss", "floatSeries", Action.METRIC, "train/loss"),
        ("train/log", "stringSeries", Action.STRING_SERIES, "train/log"),
        ("model/weights", "file", Action.FILE, "model/weights"),
        ("source_code/files", "fileSet", Action.FILESET_ENTRIES, "source_code/files"),
        ("preds", "imageSeries", Action.FILE_SERIES, "preds"),
        ("dumps", "fileSeries", Action.FILE_SERIES, "dumps"),
        ("source_code/git", "gitRef", Action.SOURCE_CODE, "source_code"),
        ("data/train", "artifact", Action.ARTIFACT_CONFIGS, "data/train"),
        ("nb", "notebookRef", Action.REPORT_ONLY, "nb"),
        ("whatever", "experimentState", Action.REPORT_ONLY, "whatever"),
        ("x", "someFutureType", Action.SKIPPED, ""),
    ],
)
def test_each_rule(path: str, legacy_type: str, action: Action, target: str) -> None:
    mapping = map_attribute(path, legacy_type)
    assert (mapping.action, mapping.target) == (action, target)
    assert mapping.why


def test_prefix_rules_match_whole_components_only() -> None:
    assert map_attribute("system/x", "float").target == "system/x"
    assert map_attribute("monitoringx/cpu", "floatSeries").target == "monitoringx/cpu"
    assert map_attribute("sys", "string").target == "sys"


def test_skipped_type_names_the_type() -> None:
    assert "someFutureType" in map_attribute("x", "someFutureType").why


def test_models_are_reported_not_imported() -> None:
    assert set(NOT_IMPORTED_KINDS) == {"model", "model_version"}


def test_docs_mapping_is_generated_from_the_rules() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "mapping.md"
    assert docs.read_text(encoding="utf-8") == mapping_table_markdown()
