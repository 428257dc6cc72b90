"""The manifest's schema: every field's JSON type and range, as data, and the check that applies it.

The schema is a small subset of JSON Schema (type, enum, minimum/maximum, minLength/maxLength, pattern,
items, properties, required, anyOf) so it reads like the familiar thing and can be printed as one
(`manifest_json_schema()`); the checker below is ours because it must report the first problem of each
field as ONE line naming the attribute, the field and why, and treat 1e400 (Python's json reads it as inf)
as out of range.

Minor versions of the format may add optional fields (ignored here) and attribute types (listed as
`unknown_type` by the importer, as a newer exporter's types are): so objects are open and an attribute of a
type not listed here is checked for its path and type only.
"""

from __future__ import annotations

import math
import re
from typing import Any

from nmig.schema.format import KIND_FOLDERS, decode_datetime

# A file declaring more than this is damage or hostility (model checkpoints of hundreds of GB are real;
# 1 TiB is far beyond any the legacy service stored).
MAX_FILE_BYTES = 1 << 40
# Series point counts: the largest legacy series hold ~10^8 points; 2^40 is a bound, not a limit.
MAX_POINTS = 1 << 40
# Text fields: attribute paths, names and messages; raw strings (notebook ids, states) share the bound.
MAX_TEXT = 1 << 20
# Milliseconds since the epoch that Python's datetime holds (years 1..9999): a commit date outside is damage.
MIN_EPOCH_MS = -62_135_596_800_000
MAX_EPOCH_MS = 253_402_300_799_999

Schema = dict[str, Any]

_TEXT: Schema = {"type": "string", "maxLength": MAX_TEXT}
_NAME: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
_NULL: Schema = {"type": "null"}
_HASH: Schema = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_SIZE: Schema = {"type": "integer", "minimum": 0, "maximum": MAX_FILE_BYTES}
_DATETIME: Schema = {"type": "string", "format": "date-time-ms"}
_FLOAT: Schema = {"anyOf": [{"type": "number"}, {"enum": ["NaN", "Infinity", "-Infinity"]}]}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [_NULL, schema]}


def _attribute(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": {"path": _NAME, "type": _NAME, **properties},
        "required": ["path", "type", *required],
    }


_SERIES_VALUE = _attribute(
    {"points": {"type": "integer", "minimum": 0, "maximum": MAX_POINTS}, "last_step": _nullable(_FLOAT)}, ("points",)
)
_FILE_SERIES = _attribute({"points": {"type": "integer", "minimum": 0, "maximum": MAX_POINTS}}, ("points",))
_GIT_COMMIT: Schema = {
    "type": "object",
    "properties": {
        "commitId": _nullable(_TEXT),
        "message": _nullable(_TEXT),
        "authorName": _nullable(_TEXT),
        "authorEmail": _nullable(_TEXT),
        "commitDate": {
            "anyOf": [_NULL, _TEXT, {"type": "number", "minimum": MIN_EPOCH_MS, "maximum": MAX_EPOCH_MS}]
        },
    },
}
_GIT_VALUE: Schema = {
    "type": "object",
    "properties": {
        "commit": _nullable(_GIT_COMMIT),
        "currentBranch": _nullable(_TEXT),
        "repositoryDirty": _nullable({"type": "boolean"}),
        "remotes": _nullable({"type": "array", "items": {"anyOf": [_TEXT, {"type": "object"}]}}),
    },
}

# Attribute type (the legacy API's name) -> its schema. docs/bundle-format.md's ATTRIBUTE table in data.
ATTRIBUTE_SCHEMAS: dict[str, Schema] = {
    "float": _attribute({"value": _nullable(_FLOAT)}),
    "int": _attribute({"value": _nullable({"type": "integer"})}),
    "bool": _attribute({"value": _nullable({"type": "boolean"})}),
    "string": _attribute({"value": _nullable(_TEXT)}),
    "datetime": _attribute({"value": _nullable(_DATETIME)}),
    "stringSet": _attribute({"values": _nullable({"type": "array", "items": _TEXT})}),
    "floatSeries": _SERIES_VALUE,
    "stringSeries": _SERIES_VALUE,
    "imageSeries": _FILE_SERIES,
    "fileSeries": _FILE_SERIES,
    "file": _attribute(
        {
            "file": {
                "type": "object",
                "properties": {"hash": _HASH, "size": _SIZE, "name": _nullable(_TEXT), "ext": _nullable(_TEXT)},
                "required": ["hash", "size"],
            }
        },
        ("file",),
    ),
    "fileSet": _attribute(
        {
            "entries": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"entry": _TEXT, "hash": _HASH, "size": _SIZE},
                    "required": ["entry", "hash", "size"],
                },
            }
        },
        ("entries",),
    ),
    "artifact": _attribute(
        {
            "hash": _nullable(_TEXT),
            "files": _nullable(
                {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "filePath": _nullable(_TEXT),
                            "fileHash": _nullable(_TEXT),
                            "type": _nullable(_TEXT),
                            "size": _nullable({"type": "integer", "minimum": 0}),
                            "metadata": _nullable({"type": "object"}),
                        },
                    },
                }
            ),
        }
    ),
    "gitRef": _attribute({"value": {"anyOf": [_NULL, _TEXT, _GIT_VALUE]}}),
    "notebookRef": _attribute({"value": {"anyOf": [_NULL, _TEXT, {"type": "object"}]}}),
    "experimentState": _attribute({"value": {"anyOf": [_NULL, _TEXT, {"type": "object"}]}}),
}

MANIFEST_SCHEMA: Schema = {
    "type": "object",
    "properties": {
        "format": {"enum": ["nmig-bundle"]},
        "format_version": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "kind": {"enum": sorted(KIND_FOLDERS)},
        "sys_id": _NAME,
        "custom_run_id": _nullable(_TEXT),
        "source_url": _nullable(_TEXT),
        "modification_time": _nullable(_DATETIME),
        "exported_at": _nullable(_DATETIME),
        "attributes": {"type": "array", "items": {"type": "object"}},
        "skipped": {
            "type": "array",
            "items": {"type": "object", "properties": {"path": _nullable(_TEXT), "type": _nullable(_TEXT), "reason": _nullable(_TEXT)}},
        },
        "errors": {
            "type": "array",
            "items": {"type": "object", "properties": {"path": _nullable(_TEXT), "message": _nullable(_TEXT)}},
        },
    },
    "required": ["format", "format_version", "kind", "sys_id", "attributes"],
}


def manifest_json_schema() -> Schema:
    """The whole manifest schema as one JSON Schema document (attributes by their `type`), for docs and tools.
    `format: date-time-ms` is `YYYY-MM-DDTHH:MM:SS.mmmZ`; numbers are finite."""
    doc = dict(MANIFEST_SCHEMA)
    doc["properties"] = dict(doc["properties"])
    doc["properties"]["attributes"] = {
        "type": "array",
        "items": {
            "anyOf": [
                {**schema, "properties": {**schema["properties"], "type": {"enum": [name]}}}
                for name, schema in ATTRIBUTE_SCHEMAS.items()
            ]
            + [_attribute({})]
        },
    }
    return doc


# ---- the check -------------------------------------------------------------------------------------------


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(value: Any, type_: str) -> bool:
    if type_ == "null":
        return value is None
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "number":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and math.isfinite(value)
        )
    if type_ == "string":
        return isinstance(value, str)
    if type_ == "array":
        return isinstance(value, list)
    if type_ == "object":
        return isinstance(value, dict)
    raise ValueError(f"schema type {type_!r}")


def _names(type_: str) -> str:
    return {"null": "null", "integer": "an integer", "number": "a finite number", "string": "a string",
            "array": "a list", "object": "an object", "boolean": "true or false"}[type_]


def first_problem(value: Any, schema: Schema, where: str) -> str | None:
    """The first way `value` breaks `schema`, as "<where>: <why>", or None when it conforms."""
    if "anyOf" in schema:
        found = [first_problem(value, option, where) for option in schema["anyOf"]]
        if all(found):
            # the option of the value's own JSON type explains best; else the last (the richest) one
            for option, problem in zip(schema["anyOf"], found, strict=True):
                if "type" in option and _type_ok(value, option["type"]) and option["type"] != "null":
                    return problem
            return f"{where} is {_shown(value)}: expected " + " or ".join(_describe(o) for o in schema["anyOf"])
        return None
    if "enum" in schema and value not in schema["enum"]:
        return f"{where} is {_shown(value)}: expected one of {', '.join(map(repr, schema['enum']))}"
    type_ = schema.get("type")
    if type_ is None:
        return None
    if not _type_ok(value, type_):
        if isinstance(value, float) and not math.isfinite(value) and type_ in ("number", "integer"):
            return f"{where} is {value!r} (out of range): expected {_names(type_)}"
        return f"{where} is {_shown(value)}: expected {_names(type_)}"
    if type_ in ("integer", "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{where} is {_shown(value)}: below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{where} is {_shown(value)}: above {schema['maximum']}"
    elif type_ == "string":
        if len(value) < schema.get("minLength", 0):
            return f"{where} is empty"
        if len(value) > schema.get("maxLength", math.inf):
            return f"{where} is longer than {schema['maxLength']} characters"
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            return f"{where} is {_shown(value)}: not of the form {schema['pattern']}"
        if schema.get("format") == "date-time-ms":
            try:
                decode_datetime(value)
            except Exception:
                return f"{where} is {_shown(value)}: not a YYYY-MM-DDTHH:MM:SS.mmmZ time"
    elif type_ == "array":
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                problem = first_problem(item, items, f"{where}[{index}]")
                if problem:
                    return problem
    elif type_ == "object":
        for key in schema.get("required", ()):
            if key not in value:
                return f"{where} has no {key!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                problem = first_problem(value[key], sub, f"{where}.{key}")
                if problem:
                    return problem
    return None


def _describe(schema: Schema) -> str:
    if "enum" in schema:
        return "one of " + ", ".join(map(repr, schema["enum"]))
    if "anyOf" in schema:
        return " or ".join(_describe(o) for o in schema["anyOf"])
    return _names(schema.get("type", "object"))


def attribute_problem(attribute: Any, index: int) -> str | None:
    """The first problem of one manifest attribute (None when it conforms), named by its path when it has one."""
    problem = first_problem(attribute, _attribute({}), f"manifest attribute {index}")
    if problem is not None:
        return problem
    schema = ATTRIBUTE_SCHEMAS.get(attribute["type"])
    return first_problem(attribute, schema, f"attribute {attribute['path'][:200]!r}") if schema is not None else None


def manifest_problems(manifest: Any) -> tuple[list[str], set[int]]:
    """Every problem of a manifest's shape, one line each (the top-level fields, then each attribute, named by
    its path), and the indices of the attributes at fault. No problems: a manifest this nmig can import or
    inspect without guessing."""
    problem = first_problem(manifest, MANIFEST_SCHEMA, "manifest")
    if problem:
        return [problem], set()
    problems: list[str] = []
    bad: set[int] = set()
    seen: set[str] = set()
    for index, attribute in enumerate(manifest["attributes"]):
        problem = attribute_problem(attribute, index)
        if problem is None and attribute["path"] in seen:
            problem = f"attribute {attribute['path'][:200]!r} appears more than once"
        if problem is None:
            seen.add(attribute["path"])
        else:
            problems.append(problem)
            bad.add(index)
    return problems, bad
