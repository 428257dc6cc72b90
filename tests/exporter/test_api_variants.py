"""The exporter reads 2.x the way the real service serves it, whichever variant of the API the server's spec
declares: float series paged by offset or by skipToStep, string series asked for whole values, image series
from their channel (an unknown step kept unknown), project metadata from getProjectDetails and the project's
own sys/*, a refused page size, a zip that takes a while, and operations the server lacks."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from exporter_helpers import ALL_TYPES_FIXTURE, export, manifest, serving

from nmig.emulators.legacy import LegacyEmulator, legacy_fault_plan
from nmig.exporter import source

ALL_TYPES = json.loads(ALL_TYPES_FIXTURE.read_text("utf-8"))


def _all_types() -> dict[str, Any]:
    fixture = copy.deepcopy(ALL_TYPES)
    fixture["workspace"] = "acme"
    fixture["projects"][0]["name"] = "vision"
    return fixture


def _export(tmp_path: Path, name: str, fixture: dict[str, Any], **served: Any) -> tuple[Any, Path]:
    with serving(fixture, **served) as info:
        out = tmp_path / name
        return export(info, out, page_size=2), out


def _file_points(bundle: Path, sys_id: str) -> list[dict[str, Any]]:
    table = pq.read_table(bundle / "runs" / sys_id / "series_file.parquet")
    return table.select(["path", "step", "timestamp", "name", "description"]).to_pylist()


def _float_and_string_series(bundle: Path) -> dict[str, str]:
    """Every run's float and string points, as text (repr keeps NaN equal to NaN and -0.0 apart from 0.0)."""
    found = {}
    for entity in sorted((bundle / "runs").iterdir()):
        for kind in ("float", "string"):
            path = entity / f"series_{kind}.parquet"
            if path.exists():
                found[f"{entity.name}/{kind}"] = repr(pq.read_table(path).to_pylist())
    return found


def test_skip_to_step_paging_reads_the_same_points_as_offset_paging(tmp_path: Path) -> None:
    fixture = _all_types()
    by_offset, offset_out = _export(tmp_path, "offset", fixture)
    by_step, step_out = _export(tmp_path, "step", fixture, series_paging="skipToStep")
    assert not by_offset.failed and not by_step.failed, (by_offset.failed, by_step.failed)
    series = _float_and_string_series(offset_out)
    assert "train/huge_steps" in series["AT-2/float"] and "9007199254740992.0" in series["AT-2/float"]
    assert _float_and_string_series(step_out) == series
    info = json.loads((step_out / "export.json").read_text("utf-8"))
    assert info["source"]["api"]["float_paging"] == "skipToStep"
    assert json.loads((offset_out / "export.json").read_text("utf-8"))["source"]["api"]["float_paging"] == "offset"


def test_string_values_are_asked_for_whole_where_the_server_would_cut_them(tmp_path: Path) -> None:
    fixture = _all_types()
    long_line = "ü" * 5_000
    run = fixture["projects"][0]["runs"][0]
    run["attributes"]["logs/long"] = {"type": "stringSeries", "steps": [0, 1], "values": [long_line, "x"],
                                      "timestamps": [1677664800000, 1677664801000]}
    _, out = _export(tmp_path, "b", fixture, series_paging="skipToStep")
    table = pq.read_table(out / "runs" / "AT-1" / "series_string.parquet").to_pylist()
    assert [r["value"] for r in table if r["path"] == "logs/long"] == [long_line, "x"]


def test_file_series_come_from_the_channel_and_an_unknown_step_stays_unknown(tmp_path: Path) -> None:
    fixture = _all_types()
    samples = fixture["projects"][0]["runs"][1]["attributes"]["images/samples"]
    samples["steps"] = [0, None]
    result, out = _export(tmp_path, "b", fixture)
    assert not result.failed, result.failed
    points = [p for p in _file_points(out, "AT-2") if p["path"] == "images/samples"]
    assert [(p["step"], p["name"], p["description"]) for p in points] == [
        (0.0, "red square", "first sample"),
        (None, "blue strip ü", ""),
    ]
    assert [int(p["timestamp"].timestamp() * 1000) for p in points] == [1677664800000, 1677664805000]


def test_project_key_visibility_and_description(tmp_path: Path) -> None:
    fixture = _all_types()
    fixture["projects"][0]["visibility"] = "pub"
    _, out = _export(tmp_path, "details", fixture)
    found = json.loads((out / "export.json").read_text("utf-8"))["source"]
    expected = ("AT", "pub", ALL_TYPES["projects"][0]["description"])
    assert (found["key"], found["visibility"], found["description"]) == expected
    assert found["metadata_sources"]["visibility"] == "getProjectDetails.visibility"
    # A server without getProjectDetails: the project's own sys/id, sys/visibility ("public") and description.
    _, out = _export(tmp_path, "sys", fixture, absent_operations=frozenset({"getProjectDetails"}))
    found = json.loads((out / "export.json").read_text("utf-8"))["source"]
    assert (found["key"], found["visibility"], found["description"]) == expected
    assert found["metadata_sources"] == {
        "key": "getProject.projectKey",
        "visibility": "project sys/visibility",
        "description": "project sys/description",
    }


def test_a_refused_page_size_is_halved_and_no_series_fails(tmp_path: Path) -> None:
    fixture = _all_types()
    _, reference = _export(tmp_path, "reference", fixture)
    with serving(fixture, max_page_limit=3) as info:
        result = export(info, tmp_path / "small", page_size=1_000)
    assert not result.failed, result.failed
    assert _float_and_string_series(tmp_path / "small") == _float_and_string_series(reference)
    assert _file_points(tmp_path / "small", "AT-2") == _file_points(reference, "AT-2")


def test_a_zip_not_ready_for_a_while_is_waited_for_then_given_up_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fixture = _all_types()
    result, out = _export(tmp_path, "slow", fixture, zip_prepare_seconds=1.0)
    assert not result.failed, result.failed
    (file_set,) = [a for a in manifest(out, "AT-3")["attributes"] if a["path"] == "source_code/files"]
    assert file_set["entries"]
    monkeypatch.setattr(source, "ZIP_PREPARE_TIMEOUT", 0.3)
    result, out = _export(tmp_path, "too_slow", fixture, zip_prepare_seconds=30.0)
    errors = manifest(out, "AT-3")["errors"]
    assert [e["path"] for e in errors] == ["source_code/files"]
    assert "had not prepared the zip of source_code/files after 0.3 s" in errors[0]["message"]


def test_an_operation_the_server_lacks_degrades_only_its_attribute_types(tmp_path: Path) -> None:
    fixture = _all_types()
    # The 2025 snapshot has no getArtifactAttribute; drop the channel operation too.
    result, out = _export(
        tmp_path, "b", fixture, series_paging="skipToStep", absent_operations=frozenset({"getChannelValues"})
    )
    info = json.loads((out / "export.json").read_text("utf-8"))["source"]["api"]
    assert set(info["unsupported_attribute_types"]) == {"artifact", "imageSeries", "fileSeries"}
    skipped = {s["path"]: s for m in ("AT-1", "AT-2", "AT-3") for s in manifest(out, m).get("skipped", [])}
    assert "the server's API has no getChannelValues" in skipped["images/samples"]["reason"]
    assert any("getArtifactAttribute" in s["reason"] for s in skipped.values())
    assert not result.failed, result.failed  # every other attribute is read; the runs are complete


@pytest.mark.parametrize("paging", ["offset", "skipToStep"])
def test_a_larger_page_is_used_only_once_the_server_answered_one_in_full(tmp_path: Path, paging: str) -> None:
    fixture = _all_types()
    n = 12_345
    fixture["projects"][0]["runs"][0]["attributes"]["train/long"] = {
        "type": "floatSeries", "steps": list(range(n)), "values": [i / 7 for i in range(n)],
        "timestamps": [1677664800000 + i for i in range(n)],
    }
    outcomes, requests = {}, {}
    for limit in (10_000, 1_000):  # the larger page answered in full; the larger page refused
        emulator = LegacyEmulator(fixture, max_page_limit=limit, series_paging=paging)  # type: ignore[arg-type]
        with emulator.serve(legacy_fault_plan()) as info:
            result = export(info, tmp_path / str(limit), page_size=1_000, larger_page_size=5_000, max_workers=1)
        assert not result.failed, result.failed
        outcomes[limit] = _float_and_string_series(tmp_path / str(limit))
        requests[limit] = emulator.stats["getFloatSeriesValues"]
    assert outcomes[10_000] == outcomes[1_000]
    assert outcomes[1_000]["AT-1/float"].count("'train/long'") == n
    # Accepted: train/long in pages of 5,000 (3), each other float series of the fixture (5) in one request,
    # its first page asked for at 5,000. Refused: train/long in 13 pages of 1,000 (by skipToStep, which the
    # emulator takes as inclusive, a page after the first brings 999 new points: 13 as well), the other five
    # in one each, and the refused first pages: one at least, and no more than were in flight at once.
    from nmig.exporter.entity import SERIES_AHEAD

    assert requests[10_000] == 3 + 5
    assert 13 + 5 + 1 <= requests[1_000] <= 13 + 5 + SERIES_AHEAD + 1, requests


@pytest.mark.parametrize("paging", ["offset", "skipToStep"])
def test_series_shorter_than_the_larger_page_take_one_request_each(tmp_path: Path, paging: str) -> None:
    # Six float series of 3,000 points each, one run, one worker: at the client's 1,000 each takes three
    # requests. Asked for at 10,000 while the larger size is being probed, each first page is the whole
    # series (which does not end the probing): one request a series, the same points either way.
    fixture = _all_types()
    n = 3_000
    run = fixture["projects"][0]["runs"][0]["attributes"]
    for i in range(6):
        run[f"train/short{i}"] = {
            "type": "floatSeries", "steps": list(range(n)), "values": [(i + k) / 7 for k in range(n)],
            "timestamps": [1677664800000 + k for k in range(n)],
        }
    outcomes, requests = {}, {}
    for larger in (None, 10_000):
        emulator = LegacyEmulator(fixture, series_paging=paging)  # type: ignore[arg-type]
        with emulator.serve(legacy_fault_plan()) as info:
            result = export(info, tmp_path / str(larger), page_size=1_000, larger_page_size=larger, max_workers=1)
        assert not result.failed, result.failed
        outcomes[larger] = _float_and_string_series(tmp_path / str(larger))
        requests[larger] = emulator.stats["getFloatSeriesValues"]
    assert outcomes[None] == outcomes[10_000]
    assert outcomes[None]["AT-1/float"].count("'train/short5'") == n
    # at 1,000: 3 requests a series by offset, 4 by skipToStep (inclusive: 999 new points a page after the
    # first); the fixture's other five float series take one request either way
    per_series = {"offset": 3, "skipToStep": 4}[paging]
    assert (requests[None], requests[10_000]) == (6 * per_series + 5, 6 + 5), requests


def test_project_details_refused_fall_back_to_the_project_and_its_sys_attributes(tmp_path: Path) -> None:
    from nmig.emulators.legacy.backend import LegacyApiError

    class Forbidden(LegacyApiError):
        status, error_type = 403, "FORBIDDEN"

    class NoDetails(LegacyEmulator):
        def _op_getProjectDetails(self, request: Any, match: Any) -> Any:
            raise Forbidden("the token's role may not read project details")

    fixture = _all_types()
    emulator = NoDetails(fixture)
    with emulator.serve(legacy_fault_plan()) as info:
        result = export(info, tmp_path / "b")
    assert not result.failed, result.failed
    assert emulator.stats["getProjectDetails"] >= 1
    found = json.loads((tmp_path / "b" / "export.json").read_text("utf-8"))["source"]
    assert (found["key"], found["visibility"], found["description"]) == (
        "AT", "priv", ALL_TYPES["projects"][0]["description"]
    )
    assert found["metadata_sources"]["visibility"] == "project sys/visibility"
