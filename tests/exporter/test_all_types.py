"""Every legacy attribute type of tests/data/legacy_all_types.json, exported through the real client, compared
value by value with what the fixture says the server holds."""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from exporter_helpers import ALL_TYPES_FIXTURE, serving

from nmig.exporter import ExportOptions, export_project
from nmig.schema import Bundle, EntityBundle


def _content(spec: dict[str, Any]) -> bytes:
    if "content_text" in spec:
        return spec["content_text"].encode("utf-8")
    return base64.b64decode(spec["content_base64"])


def _float(value: Any) -> float:
    return float(value)  # also reads the fixture's "NaN" / "Infinity" / "-Infinity"


def _same_floats(actual: list[float], expected: list[Any]) -> bool:
    wanted = [_float(v) for v in expected]
    return len(actual) == len(wanted) and all(
        (math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(actual, wanted, strict=True)
    )


def _series(entity: EntityBundle, kind: str, path: str) -> pa.Table:
    batches = list(entity.iter_series(kind))
    if not batches:
        return pa.table({"path": pa.array([], pa.string())})
    table = pa.Table.from_batches(batches)
    paths = table.column("path").cast(pa.string()).to_pylist()
    return table.filter(pa.array([p == path for p in paths]))


def _millis(table: pa.Table) -> list[int]:
    return table.column("timestamp").cast(pa.int64()).to_pylist()


def _encoded_float(value: Any) -> Any:
    number = _float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    return number


def check_attribute(entity: EntityBundle, path: str, spec: dict[str, Any]) -> None:
    exported = {a["path"]: a for a in entity.attributes}
    assert path in exported, f"{entity.sys_id}: {path} missing"
    got = exported[path]
    kind = spec["type"]
    assert got["type"] == kind, (path, got)
    where = f"{entity.sys_id} {path}"
    if kind == "float":
        assert got["value"] == _encoded_float(spec["value"]), where
    elif kind in ("int", "bool", "string", "datetime", "experimentState"):
        assert got["value"] == spec["value"] and type(got["value"]) is type(spec["value"]), where
    elif kind == "stringSet":
        assert got["values"] == sorted(spec["values"]), where
    elif kind in ("floatSeries", "stringSeries"):
        table = _series(entity, "float" if kind == "floatSeries" else "string", path)
        assert got["points"] == len(spec["steps"]) == table.num_rows, where
        assert table.num_rows == 0 or table.column("step").to_pylist() == [float(s) for s in spec["steps"]], where
        if table.num_rows:
            assert _millis(table) == spec["timestamps"], where
            values = table.column("value").to_pylist()
            if kind == "floatSeries":
                assert _same_floats(values, spec["values"]), where
            else:
                assert values == spec["values"], where
    elif kind == "file":
        content = _content(spec)
        assert entity.read_file(got["file"]["hash"]) == content, where
        assert got["file"]["size"] == len(content) and got["file"]["ext"] == spec["ext"], where
    elif kind == "fileSet":
        entries = {e["entry"]: entity.read_file(e["hash"]) for e in got["entries"]}
        assert entries == {name: _content(f) for name, f in spec["files"].items()}, where
    elif kind == "imageSeries":
        table = _series(entity, "file", path)
        assert got["points"] == len(spec["steps"]) == table.num_rows, where
        if table.num_rows:
            assert table.column("step").to_pylist() == [float(s) for s in spec["steps"]], where
            assert _millis(table) == spec["timestamps"], where
            assert table.column("name").to_pylist() == spec["names"], where
            assert table.column("description").to_pylist() == spec["descriptions"], where
            contents = [entity.read_file(h) for h in table.column("file_hash").to_pylist()]
            assert contents == [base64.b64decode(c) for c in spec["contents_base64"]], where
    elif kind == "artifact":
        assert got["hash"] == spec["hash"], where
        assert got["files"] == spec["files"], where
    elif kind == "gitRef":
        value = got["value"]
        assert value["commit"] == spec["commit"], where
        assert (value["currentBranch"], value["remotes"], value["repositoryDirty"]) == (
            spec["branch"], spec["remotes"], spec["dirty"]
        ), where
    elif kind == "notebookRef":
        fields = ("notebookId", "notebookName", "checkpointId", "checkpointName")
        assert {f: got["value"].get(f) for f in fields} == {f: spec.get(f) for f in fields}, where
    else:
        pytest.fail(f"the fixture has a type this test does not know: {kind}")


@pytest.fixture(scope="module")
def all_types_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    fixture = json.loads(ALL_TYPES_FIXTURE.read_text("utf-8"))
    project = fixture["projects"][0]
    out = tmp_path_factory.mktemp("all-types") / "bundle"
    with serving(ALL_TYPES_FIXTURE) as info:
        result = export_project(
            ExportOptions(
                project=f"{fixture['workspace']}/{project['name']}",
                out=out,
                api_token=info.api_token,
                include_trashed=True,
                quiet=True,
                page_size=2,  # several pages even for the fixture's short series
            )
        )
    assert not result.failed, result.failed
    return out, fixture


def test_every_type_of_every_entity_is_exported_exactly(all_types_bundle: tuple[Path, dict[str, Any]]) -> None:
    out, fixture = all_types_bundle
    project = fixture["projects"][0]
    bundle = Bundle(out)
    checked: set[str] = set()
    entities: list[tuple[EntityBundle, dict[str, Any]]] = []
    for n, run in enumerate(project["runs"], start=1):
        entities.append((bundle.entity("run", f"{project['key']}-{n}"), run))
    for model in project.get("models", []):
        model_id = f"{project['key']}-{model['key']}"
        entities.append((bundle.entity("model", model_id), model))
        for n, version in enumerate(model.get("versions", []), start=1):
            entities.append((bundle.entity("model_version", f"{model_id}-{n}"), version))
    for entity, spec in entities:
        assert entity.complete and not entity.verify(), entity.sys_id
        assert entity.manifest["skipped"] == [] and entity.manifest["errors"] == []
        for path, attribute in spec["attributes"].items():
            check_attribute(entity, path, attribute)
            checked.add(attribute["type"])
    assert checked >= {
        "float", "int", "bool", "string", "datetime", "experimentState", "stringSet", "floatSeries",
        "stringSeries", "file", "fileSet", "imageSeries", "artifact", "gitRef", "notebookRef",
    }
    custom = {e.sys_id: e.manifest["custom_run_id"] for e, _ in entities if e.kind == "run"}
    assert custom["AT-1"] == "custom-atoms-001" and custom["AT-2"] is None


def test_project_attributes_and_source_in_export_info(all_types_bundle: tuple[Path, dict[str, Any]]) -> None:
    out, fixture = all_types_bundle
    project = fixture["projects"][0]
    info = Bundle(out).info
    assert info["source"]["key"] == project["key"] and info["source"]["description"] == project["description"]
    exported = {a["path"]: a for a in info["project_attributes"]}
    for path, spec in project["attributes"].items():
        got = exported[path]
        if spec["type"] == "stringSet":
            assert got["values"] == sorted(spec["values"])
        elif spec["type"] == "float":
            assert got["value"] == _encoded_float(spec["value"])
        else:
            assert got["value"] == spec["value"], path
