"""Regenerates tests/conformance/legacy_contract.json from the published Neptune specs (reference data).

    .venv/bin/python tests/conformance/extract_legacy_contract.py [/path/to/neptune-api-reference]

Only facts are kept (operation ids, methods, paths, parameter names/places/types, model fields/types, enums),
for the operations the legacy emulator serves and the exporter calls, and the models they reach. The
result is committed; the conformance test reads only the JSON, never the reference folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REFERENCE = Path("/work/shared/reference/neptune-api")
CONTRACT = Path(__file__).with_name("legacy_contract.json")

SOURCES: dict[str, dict[str, str]] = {
    "leaderboard_2024": {
        "file": "leaderboard_swagger_2024.json",
        "snapshot": "neptune-api leaderboard_swagger.json at 8738900c7569f71fad04785d304f836883bfd912 (2024)",
    },
    "leaderboard_2025": {
        "file": "leaderboard.json",
        "snapshot": "neptune-api scripts/swagger/leaderboard.json at ea103ec762ae029cecf032509587ff3b4fb78d55 "
        "(2025-05-15)",
    },
    "backend_2025": {
        "file": "backend.json",
        "snapshot": "neptune-api codegen/swagger/backend.json at 05a7d838d9d1b99b67338cde6a56575540502ff8 "
        "(2025-09-05)",
    },
}
# The operations nmig's legacy side depends on (served by the emulator or called by the exporter).
OPERATIONS = {
    "backend": [
        "getClientConfig",
        "exchangeApiToken",
        "listProjects",
        "getProject",
        "getProjectDetails",
        "listOrganizations",
    ],
    "leaderboard": [
        "getExperiment",
        "getExperimentAttributes",
        "getFloatAttribute",
        "getIntAttribute",
        "getBoolAttribute",
        "getStringAttribute",
        "getDatetimeAttribute",
        "getFileAttribute",
        "getStringSetAttribute",
        "getFloatSeriesAttribute",
        "getStringSeriesAttribute",
        "getArtifactAttribute",
        "getFloatSeriesValues",
        "getStringSeriesValues",
        "getImageSeriesValues",
        "getImageSeriesValue",
        "getChannelValues",
        "downloadAttribute",
        "lsFileSetAttribute",
        "prepareForDownloadFileSetAttributeZip",
        "getDownloadPrepareRequest",
        "searchLeaderboardAttributes",
        "searchLeaderboardEntries",
    ],
}


def _descriptor(schema: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    """A schema reduced to its type facts: {"ref": Model} | {"type", "format"?, "items"?}."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        wanted.add(name)
        return {"ref": name}
    out: dict[str, Any] = {"type": schema.get("type", "object")}
    if "format" in schema:
        out["format"] = schema["format"]
    if "items" in schema:
        out["items"] = _descriptor(schema["items"], wanted)
    return out


def _model(schema: dict[str, Any], wanted: set[str]) -> dict[str, Any]:
    if "enum" in schema:
        return {"type": schema.get("type", "string"), "enum": list(schema["enum"])}
    return {
        "type": schema.get("type", "object"),
        "required": sorted(schema.get("required", [])),
        "fields": {name: _descriptor(sub, wanted) for name, sub in sorted(schema.get("properties", {}).items())},
    }


def extract(reference: Path) -> dict[str, Any]:
    operations: list[dict[str, Any]] = []
    models: dict[str, dict[str, Any]] = {}
    for source, about in SOURCES.items():
        spec = json.loads((reference / about["file"]).read_text())
        wanted_ops = OPERATIONS[source.split("_")[0]]
        wanted: set[str] = set()
        for path, item in spec["paths"].items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if not isinstance(op, dict) or op.get("operationId") not in wanted_ops:
                    continue
                parameters = {}
                for p in shared + op.get("parameters", []):
                    fact: dict[str, Any] = {"in": p["in"], "required": bool(p.get("required", False))}
                    fact.update(_descriptor(p["schema"], wanted) if "schema" in p else _descriptor(p, wanted))
                    parameters[p["name"]] = fact
                ok = op.get("responses", {}).get("200", {})
                operations.append(
                    {
                        "operationId": op["operationId"],
                        "source": source,
                        "method": method.upper(),
                        "path": path,
                        "parameters": dict(sorted(parameters.items())),
                        "response": _descriptor(ok["schema"], wanted) if "schema" in ok else None,
                    }
                )
        definitions = spec["definitions"]
        done: dict[str, Any] = {}
        while wanted - done.keys():
            name = sorted(wanted - done.keys())[0]
            done[name] = _model(definitions[name], wanted) if name in definitions else {"missing": True}
        models[source] = dict(sorted(done.items()))
    operations.sort(key=lambda o: (o["operationId"], o["source"]))
    return {
        "about": "Facts extracted from Neptune's published Swagger specs (neptune-api, Apache-2.0) by "
        "tests/conformance/extract_legacy_contract.py: for each operation nmig's legacy side depends on, "
        "per snapshot, its method, path, parameters and 200 response, and the models those reach.",
        "sources": SOURCES,
        "operations": operations,
        "models": models,
    }


if __name__ == "__main__":
    reference = Path(sys.argv[1]) if len(sys.argv) > 1 else REFERENCE
    CONTRACT.write_text(json.dumps(extract(reference), indent=1, sort_keys=False) + "\n")
    print(f"wrote {CONTRACT}")
