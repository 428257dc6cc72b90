"""Extract, from the published neptune-api specs, the facts of every endpoint the 3.x emulator serves.

    python tests/conformance/extract_neptune3_contract.py /work/shared/reference/neptune-api \
        > tests/conformance/neptune3_contract.json

The output (neptune3_contract.json, committed) holds per endpoint its method, path, parameters (name, place,
type) and the models of its request and answers, each model's fields with their types, and the protobuf
messages of the protobuf bodies with their fields; every entry names the file and snapshot it comes from.
test_neptune3_conformance.py holds the emulator to it, and re-runs this extraction when the specs are at hand
to prove the data file still says what they say. Facts only: nothing of the specs' text is copied.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

# The snapshots (the reference folder's README.md says where each file comes from in neptune-api).
SNAPSHOTS = {
    "backend.json": "neptune-api codegen/swagger/backend.json at 05a7d838d9d1b99b67338cde6a56575540502ff8 (2025-09-05)",
    "retrieval.json": "neptune-api codegen/swagger/retrieval.json at 05a7d83 (2025-09-05)",
    "ingestion_openapi.json": "neptune-api codegen/swagger/ingestion_openapi.json at 05a7d83 (2025-09-05)",
    "storagebridge_openapi.json": "neptune-api codegen/swagger/storagebridge_openapi.json at 05a7d83 (2025-09-05)",
    "proto": "neptune-api codegen/proto/ at 05a7d83 (2025-09-05)",
}

# (source file, operationId) of every endpoint the 3.x emulator serves, with the protobuf messages of bodies
# the spec declares only as binary or as an empty object (`proto_request` / `proto_response`).
ENDPOINTS: list[dict[str, Any]] = [
    {"source": "backend.json", "operationId": "getClientConfig"},
    {"source": "backend.json", "operationId": "exchangeApiToken"},
    {"source": "backend.json", "operationId": "createProject"},
    {"source": "backend.json", "operationId": "listProjects"},
    {"source": "backend.json", "operationId": "getProject"},
    {"source": "ingestion_openapi.json", "operationId": "ingest",
     "proto_request": "RunOperation", "proto_response": "SubmitResponse"},
    {"source": "ingestion_openapi.json", "operationId": "bulkCheckStatus",
     "proto_request": "RequestIdList", "proto_response": "BulkRequestStatus"},
    {"source": "storagebridge_openapi.json", "operationId": "signed_url_generic"},
    {"source": "storagebridge_openapi.json", "operationId": "complete_multipart_upload"},
    {"source": "retrieval.json", "operationId": "searchLeaderboardEntriesProto",
     "proto_response": "ProtoLeaderboardEntriesSearchResultDTO"},
    {"source": "retrieval.json", "operationId": "getTimeseriesBucketsProto",
     "proto_request": "ProtoGetTimeseriesBucketsRequest", "proto_response": "ProtoTimeseriesBucketsDTO"},
    {"source": "retrieval.json", "operationId": "queryAttributeDefinitionsWithinProject"},
    {"source": "retrieval.json", "operationId": "queryAttributesWithinProjectProto",
     "proto_response": "ProtoQueryAttributesResultDTO"},
    {"source": "retrieval.json", "operationId": "getMultipleFloatSeriesValuesProto",
     "proto_response": "ProtoFloatSeriesValuesResponseDTO"},
    {"source": "retrieval.json", "operationId": "getSeriesValuesProto", "proto_response": "ProtoSeriesValuesResponseDTO"},
    {"source": "retrieval.json", "operationId": "trashExperiments"},
]


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_of(schema: dict[str, Any] | None) -> str:
    """A field's type in one string: string[/format], integer, number, boolean, object, enum(a|b), ref:Name,
    array<...>, any; an OpenAPI 3.1 ["x", "null"] or oneOf with null is "x?"."""
    if not schema:
        return "any"
    if "$ref" in schema:
        return "ref:" + _ref_name(schema["$ref"])
    if "oneOf" in schema or "anyOf" in schema:
        options = [s for s in schema.get("oneOf", schema.get("anyOf", [])) if s.get("type") != "null"]
        nullable = len(options) < len(schema.get("oneOf", schema.get("anyOf", [])))
        return type_of(options[0] if len(options) == 1 else {}) + ("?" if nullable else "")
    kind = schema.get("type")
    nullable = False
    if isinstance(kind, list):
        nullable = "null" in kind
        kind = next((k for k in kind if k != "null"), None)
    if "enum" in schema:
        text = "enum(" + "|".join(map(str, schema["enum"])) + ")"
    elif kind == "array":
        text = f"array<{type_of(schema.get('items'))}>"
    elif kind in ("string", "integer", "number", "boolean", "object"):
        text = kind + (f"/{schema['format']}" if kind == "string" and "format" in schema else "")
    else:
        text = "any"
    return text + ("?" if nullable else "")


def _schemas(spec: dict[str, Any]) -> dict[str, Any]:
    return spec.get("definitions") or spec.get("components", {}).get("schemas", {})


def _model(spec: dict[str, Any], name: str) -> dict[str, Any]:
    schema = _schemas(spec)[name]
    if "enum" in schema:
        return {"enum": list(schema["enum"])}
    return {
        "fields": {field: type_of(sub) for field, sub in sorted(schema.get("properties", {}).items())},
        "required": sorted(schema.get("required", [])),
    }


def _refs(type_text: str) -> list[str]:
    return re.findall(r"ref:([A-Za-z0-9_]+)", type_text)


def _operation(spec: dict[str, Any], operation_id: str) -> tuple[str, str, dict[str, Any]]:
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                return method.upper(), path, operation
    raise KeyError(operation_id)


def _body_type(operation: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(type of the request body, its content types) in Swagger 2.0 or OpenAPI 3.1."""
    for parameter in operation.get("parameters", []):
        if parameter.get("in") == "body":
            return type_of(parameter.get("schema")), list(operation.get("consumes", []))
    body = operation.get("requestBody", {}).get("content", {})
    for media in body.values():
        return type_of(media.get("schema")), list(body)
    return None, []


def _answers(operation: dict[str, Any]) -> dict[str, str | None]:
    answers: dict[str, str | None] = {}
    for status, answer in sorted(operation.get("responses", {}).items()):
        schema = answer.get("schema")
        if schema is None:
            schema = next(iter(answer.get("content", {}).values()), {}).get("schema")
        answers[status] = type_of(schema) if schema else None
    return answers


_PROTO_MESSAGE = re.compile(r"^message\s+(\w+)\s*\{", re.M)
_PROTO_FIELD = re.compile(r"^\s*(?:(optional|repeated)\s+)?(map<[^>]+>|[\w.]+)\s+(\w+)\s*=\s*(\d+)", re.M)


def proto_messages(proto_dir: Path) -> dict[str, dict[str, Any]]:
    """Every top-level and nested message of the .proto files: {name: {"source", "fields": {name: "label type = n"}}}.
    Nested messages are named by their own name (the names used here are unique)."""
    found: dict[str, dict[str, Any]] = {}
    for file in sorted(proto_dir.rglob("*.proto")):
        text = file.read_text(encoding="utf-8")
        text = re.sub(r"//[^\n]*", "", text)
        for match in _PROTO_MESSAGE.finditer(text):
            depth, index = 1, match.end()
            while depth and index < len(text):
                depth += {"{": 1, "}": -1}.get(text[index], 0)
                index += 1
            body = text[match.end() : index - 1]
            # only this message's own fields: drop nested message / enum / oneof-free blocks' contents
            own = re.sub(r"(message|enum)\s+\w+\s*\{(?:[^{}]|\{[^{}]*\})*\}", "", body)
            own = re.sub(r"oneof\s+\w+\s*\{([^{}]*)\}", r"\1", own)
            fields = {
                name: f"{label or 'singular'} {kind} = {number}"
                for label, kind, name, number in _PROTO_FIELD.findall(own)
                if kind not in ("option", "reserved")
            }
            found.setdefault(match.group(1), {"source": str(file.relative_to(proto_dir.parent)), "fields": fields})
    return found


def extract(reference: Path) -> dict[str, Any]:
    specs = {name: json.loads((reference / name).read_text(encoding="utf-8")) for name in SNAPSHOTS if name.endswith(".json")}
    endpoints, models = [], {}
    pending: list[tuple[str, str]] = []
    for wanted in ENDPOINTS:
        spec = specs[wanted["source"]]
        method, path, operation = _operation(spec, wanted["operationId"])
        body, consumes = _body_type(operation)
        parameters = {
            p["name"]: {"in": p["in"], "type": type_of(p.get("schema") or p), "required": bool(p.get("required"))}
            for p in operation.get("parameters", [])
            if p.get("in") != "body"
        }
        answers = _answers(operation)
        endpoint = {
            "operationId": wanted["operationId"],
            "method": method,
            "path": path,
            "source": wanted["source"],
            "snapshot": SNAPSHOTS[wanted["source"]],
            "parameters": dict(sorted(parameters.items())),
            "body": body,
            "consumes": consumes,
            "produces": list(operation.get("produces", [])),
            "responses": answers,
        }
        for key in ("proto_request", "proto_response"):
            if key in wanted:
                endpoint[key] = wanted[key]
        endpoints.append(endpoint)
        for type_text in [body or "", *(a or "" for a in answers.values())]:
            pending.extend((wanted["source"], name) for name in _refs(type_text))
    while pending:
        source, name = pending.pop()
        if name in models:
            continue
        model = _model(specs[source], name)
        models[name] = {"source": source, "snapshot": SNAPSHOTS[source], **model}
        for type_text in model.get("fields", {}).values():
            pending.extend((source, ref) for ref in _refs(type_text))
    messages = proto_messages(reference / "proto")
    wanted_messages: dict[str, Any] = {}
    queue = [e[k] for e in endpoints for k in ("proto_request", "proto_response") if k in e]
    while queue:
        name = queue.pop().rsplit(".", 1)[-1]
        if name in wanted_messages or name not in messages:
            continue
        wanted_messages[name] = {**messages[name], "snapshot": SNAPSHOTS["proto"]}
        for description in messages[name]["fields"].values():
            kind = description.split(" ", 1)[1].rsplit(" = ", 1)[0]
            queue.extend(re.findall(r"[\w.]+", kind.replace("map<", "").replace(">", "")))
    return {
        "about": "Facts of the endpoints the 3.x emulator serves, extracted by extract_neptune3_contract.py from "
        "the published neptune-api specs (Apache-2.0); see test_neptune3_conformance.py.",
        "endpoints": endpoints,
        "models": dict(sorted(models.items())),
        "proto_messages": dict(sorted(wanted_messages.items())),
    }


if __name__ == "__main__":
    json.dump(extract(Path(sys.argv[1])), sys.stdout, indent=1, sort_keys=False)
    sys.stdout.write("\n")
