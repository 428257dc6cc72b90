"""The legacy (2.x) side held to Neptune's published specs (facts in legacy_contract.json, from neptune-api).

Fails when the legacy emulator's served Swagger has an operation, parameter or response field the real specs
lack, at another path, or with another type; and when the exporter asks for an operation or a parameter the
real API does not have. Every exemption is an item no snapshot has but a 2.x client sends or reads: its
evidence (the client's file and line, in the installed neptune 1.14) is written next to it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spec_facts import load_contract, parameter_known, served_problems  # noqa: E402

from nmig.emulators.legacy.spec import SERIES_PAGINGS, build_specs  # noqa: E402
from nmig.exporter.source import API_CALLS  # noqa: E402

CONTRACT = load_contract("legacy_contract.json")

# item -> evidence. Items are named as served_problems() names them.
EXEMPTIONS: dict[str, str] = {
    "ClientConfig.multiPartUpload": "neptune/internal/backends/api_model.py:153 reads it (default: no multipart)",
    "ClientConfig.artifacts": "neptune/internal/backends/api_model.py:167 reads it (default: no artifacts API)",
    "ClientConfig.sysNameSetByBackend": "neptune/internal/backends/api_model.py:177 reads it (default False)",
    "NotebookRefAttributeDTO.value": "neptune/internal/utils/generic_attribute_mapper.py:36 and :66 read "
    "`.value` of notebookRefProperties (declared, never sent)",
    "getFloatSeriesValues parameter offset": "neptune/internal/backends/hosted_neptune_backend.py:1009 sends "
    "offset (the 2.x servers neptune 1.14 was built for declared it; served only with series_paging='offset')",
    "listArtifactFiles operation": "neptune/internal/backends/hosted_artifact_operations.py:285 calls it on the "
    "spec at /api/artifacts/swagger.json (hosted_client.py:55); no published snapshot has the artifacts API",
}


def test_contract_names_its_sources() -> None:
    sources = CONTRACT["sources"]
    assert {entry["source"] for entry in CONTRACT["operations"]} <= set(sources)
    for about in sources.values():
        assert about["file"] and "neptune-api" in about["snapshot"]


@pytest.mark.parametrize("paging", SERIES_PAGINGS)
def test_the_served_specs_have_only_what_the_real_api_has(paging: str) -> None:
    problems, used = served_problems(list(build_specs(paging).values()), CONTRACT, EXEMPTIONS)  # type: ignore[arg-type]
    assert problems == []
    if paging == "offset":
        assert used == set(EXEMPTIONS), f"exemptions no longer needed: {set(EXEMPTIONS) - used}"


def test_the_checker_sees_a_wrong_path_a_wrong_type_and_an_invented_field() -> None:
    specs = build_specs("skipToStep")
    leaderboard = next(s for s in specs.values() if "getFloatSeriesValues" in str(s["paths"]))
    import copy

    spec = copy.deepcopy(leaderboard)
    spec["paths"]["/api/leaderboard/v1/attributes/float"] = spec["paths"].pop("/api/leaderboard/v1/attributes/floats")
    spec["definitions"]["ImageSeriesValuesDTO"]["properties"]["values"] = {"type": "array", "items": {}}
    spec["definitions"]["FloatPointValueDTO"]["properties"]["step"] = {"type": "string"}
    problems, _ = served_problems([spec], CONTRACT, EXEMPTIONS)
    text = "\n".join(problems)
    assert "getFloatAttribute: served at GET /api/leaderboard/v1/attributes/float" in text
    assert "ImageSeriesValuesDTO.values is not in the real model" in text
    assert "getFloatSeriesValues response.values[].step: served as string" in text


def test_the_exporter_asks_only_for_what_the_real_api_has() -> None:
    unknown = []
    for operation, parameters in API_CALLS.items():
        if not any(v["operationId"] == operation for v in CONTRACT["operations"]):
            if f"{operation} operation" not in EXEMPTIONS:
                unknown.append(operation)
            continue
        for parameter in parameters:
            if not parameter_known(CONTRACT, operation, parameter) and f"{operation} parameter {parameter}" not in EXEMPTIONS:
                unknown.append(f"{operation}({parameter})")
    assert unknown == []
