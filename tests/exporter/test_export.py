"""`nmig export` through the real neptune client against the legacy emulator: selection, resume, update,
sharding, hostile names, and the bundle read back through nmig.schema and pandas."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pandas as pd
from exporter_helpers import T0, digests, export, make_project, make_run, manifest, serving

from nmig.emulators.http import EmulatorInfo
from nmig.schema import Bundle


def run_ids(bundle: Path) -> set[str]:
    return {p.name for p in (bundle / "runs").iterdir()} if (bundle / "runs").is_dir() else set()


def test_clean_export_holds_every_run_model_and_version(clean_bundle: Path) -> None:
    assert run_ids(clean_bundle) == {f"VIS-{n}" for n in range(1, 8)}
    assert {p.name for p in (clean_bundle / "models").iterdir()} == {"VIS-CLS"}
    assert {p.name for p in (clean_bundle / "model_versions").iterdir()} == {"VIS-CLS-1", "VIS-CLS-2"}
    bundle = Bundle(clean_bundle)
    assert all(e.complete and not e.verify() for k in ("run", "model", "model_version") for e in bundle.entities(k))
    info = bundle.info
    assert info["source"]["key"] == "VIS" and info["source"]["visibility"] == "priv"
    assert {"path": "team", "type": "string", "value": "core"} in info["project_attributes"]
    log = (clean_bundle / "export.log").read_text("utf-8")
    assert "run VIS-3 http://127.0.0.1:" in log and "/acme/vision/e/VIS-3 exported (new)" in log
    assert not (clean_bundle / ".partial").exists() or not any((clean_bundle / ".partial").iterdir())


def test_no_token_anywhere_in_the_bundle(standard_server: EmulatorInfo, clean_bundle: Path) -> None:
    token = standard_server.api_token.encode()
    for path in clean_bundle.rglob("*"):
        if path.is_file():
            assert token not in path.read_bytes(), path


def test_values_series_and_files_are_exact(clean_bundle: Path) -> None:
    run = manifest(clean_bundle, "VIS-2")
    attrs = {a["path"]: a for a in run["attributes"]}
    assert run["custom_run_id"] is None and manifest(clean_bundle, "VIS-3")["custom_run_id"] == "sweep-3"
    assert run["modification_time"] == "2024-05-01T12:00:00.123Z"
    assert attrs["params/lr"] == {"path": "params/lr", "type": "float", "value": 0.002}
    assert attrs["params/weird"]["value"] == "-Infinity"
    assert manifest(clean_bundle, "VIS-1")["attributes"][0]  # non-empty
    assert {a["path"]: a for a in manifest(clean_bundle, "VIS-3")["attributes"]}["params/weird"]["value"] == "NaN"
    assert attrs["params/epochs"]["value"] == 12 and attrs["params/use_amp"]["value"] is True
    assert attrs["params/note"]["value"] == "note 2 ✓"
    assert attrs["sys/tags"]["values"] == ["exp", "tag2"]
    assert attrs["metrics/loss"]["points"] == 2_500 and attrs["metrics/loss"]["last_step"] == 2_499.0
    entity = Bundle(clean_bundle).entity("run", "VIS-2")
    table = pd.concat(b.to_pandas() for b in entity.iter_series("float"))
    loss = table[table["path"] == "metrics/loss"]
    assert list(loss["step"]) == [float(i) for i in range(2_500)]
    expected = [1.0 / (i + 1) if i % 997 else math.nan for i in range(2_500)]
    assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(loss["value"], expected, strict=True))
    # timestamps straight from epoch milliseconds, in UTC
    assert [int(t.timestamp() * 1000) for t in loss["timestamp"][:3]] == [T0, T0 + 17, T0 + 34]
    assert str(loss["timestamp"].dt.tz) == "UTC"
    weights = attrs["model/weights"]["file"]
    assert entity.read_file(weights["hash"]) == bytes(range(256)) * 3
    assert (weights["name"], weights["ext"], weights["size"]) == ("weights.bin", "bin", 768)
    entries = {e["entry"]: entity.read_file(e["hash"]) for e in attrs["source_code/files"]["entries"]}
    assert entries == {"train.py": b"print(2)\n", "cfg/base.yaml": b"a: 1\n"}
    images = pd.concat(b.to_pandas() for b in entity.iter_series("file"))
    assert list(images["step"]) == [0.0, 5.0] and list(images["name"]) == ["first", "second"]
    assert list(images["description"]) == ["d1", ""]
    assert [entity.read_file(h) for h in images["file_hash"]] == [b"\x89PNG\r\n\x1a\n\x02\x01", b"\x89PNG\r\n\x1a\n\x02\x02"]
    assert set(images["ext"]) == {"png"}
    logs = pd.concat(b.to_pandas() for b in entity.iter_series("string"))
    assert list(logs["value"]) == ["line 0 of run 2", "line 1 of run 2", "line 2 of run 2"]
    assert list(logs["step"]) == [0.5, 1.5, 2.5]
    version = {a["path"]: a for a in manifest(clean_bundle, "VIS-CLS-2", "model_versions")["attributes"]}
    version_entity = Bundle(clean_bundle).entity("model_version", "VIS-CLS-2")
    assert version_entity.read_file(version["model/binary"]["file"]["hash"]) == b"weights"


def test_pandas_api_reads_the_exported_bundle(clean_bundle: Path) -> None:
    from nmig.schema.frames import (
        read_attributes,
        read_file,
        read_float_series,
        read_runs,
        read_string_series,
    )

    runs = read_runs(clean_bundle)
    assert set(runs["sys_id"] if "sys_id" in runs else runs.index) >= {f"VIS-{n}" for n in range(1, 8)}
    loss = read_float_series(clean_bundle, run_id="VIS-4", path="metrics/loss")
    assert len(loss) == 2_500 and loss["value"].iloc[1] == 0.5
    logs = read_string_series(clean_bundle, run_id="VIS-4")
    assert list(logs["value"]) == [f"line {i} of run 4" for i in range(3)]
    attrs = read_attributes(clean_bundle, run_id="VIS-4")
    assert "params/lr" in set(attrs["path"])
    assert read_file(clean_bundle, "VIS-4", "source_code/files", entry="train.py") == b"print(4)\n"
    # and every parquet file opens with plain pandas
    frame = pd.read_parquet(clean_bundle / "runs" / "VIS-4" / "series_float.parquet")
    assert set(frame["path"].astype(str)) == {"metrics/loss"}


def test_trashed_runs_only_with_include_trashed(standard_server: EmulatorInfo, tmp_path: Path) -> None:
    result = export(standard_server, tmp_path / "b", models=False)
    assert not result.failed
    assert run_ids(tmp_path / "b") == {f"VIS-{n}" for n in range(1, 7)}
    assert not (tmp_path / "b" / "models").exists()


def test_runs_query_and_shards(standard_server: EmulatorInfo, clean_bundle: Path, tmp_path: Path) -> None:
    export(standard_server, tmp_path / "exact", models=False, runs=("VIS-1", "sweep-5", "VIS-[46]"))
    assert run_ids(tmp_path / "exact") == {"VIS-1", "VIS-4", "VIS-5", "VIS-6"}

    export(standard_server, tmp_path / "query", models=False, query="params/epochs:int >= 14")
    assert run_ids(tmp_path / "query") == {"VIS-4", "VIS-5", "VIS-6"}

    reference = digests(clean_bundle)
    merged = tmp_path / "merged"
    seen: list[set[str]] = []
    for index in (1, 2, 3):
        out = tmp_path / f"shard{index}"
        from nmig.sharding import Shard

        result = export(standard_server, out, include_trashed=True, shard=Shard(index, 3))
        assert not result.failed
        part = set(digests(out))
        seen.append(part)
        for key in part:
            shutil.copytree(out / key, merged / key)
    assert sum(len(s) for s in seen) == len(set().union(*seen))  # disjoint
    assert digests(merged) == reference  # together exactly the full export


def test_rerun_skips_complete_and_redoes_incomplete(standard_server: EmulatorInfo, tmp_path: Path) -> None:
    out = tmp_path / "b"
    first = export(standard_server, out, models=False)
    before = digests(out)
    # make VIS-2 incomplete the way a failed attribute does: no COMPLETE marker
    os.remove(out / "runs" / "VIS-2" / "COMPLETE")
    again = export(standard_server, out, models=False)
    assert [r.sys_id for r in again.exported] == ["VIS-2"]
    assert len(again.up_to_date) == len(first.exported) - 1
    assert digests(out) == before


def test_update_re_exports_runs_modified_since(tmp_path: Path) -> None:
    out = tmp_path / "b"
    old = make_project([make_run(n, points=50) for n in (1, 2, 3)], models=False)
    with serving(old) as info:
        export(info, out)
    changed = make_run(2, points=60, modified="2024-06-01T00:00:00.000Z", extra={"params/new": {"type": "int", "value": 5}})
    new = make_project([make_run(1, points=50), changed, make_run(3, points=50)], models=False)
    with serving(new) as info:
        plain = export(info, out)
        assert plain.exported == [] and len(plain.up_to_date) == 3  # without --update nothing changes
        assert manifest(out, "VIS-2")["modification_time"] == "2024-05-01T12:00:00.123Z"
        updated = export(info, out, update=True)
    assert [r.sys_id for r in updated.exported] == ["VIS-2"]
    attrs = {a["path"]: a for a in manifest(out, "VIS-2")["attributes"]}
    assert attrs["params/new"]["value"] == 5 and attrs["metrics/loss"]["points"] == 60
    assert manifest(out, "VIS-2")["modification_time"] == "2024-06-01T00:00:00.000Z"


HOSTILE_ENTRIES = ["../../escape.txt", "/abs/olute.txt", "a/../../../b.txt", "ünï cödé/spa ced.py", "..", "C:\\win.txt"]


def test_hostile_names_stay_inside_the_bundle(tmp_path: Path) -> None:
    hostile = {
        "source_code/files": {
            "type": "fileSet",
            "files": {name: {"content_text": f"content of {name}"} for name in HOSTILE_ENTRIES},
        },
        "../../outside/attr": {"type": "string", "value": "path-like attribute name"},
        "spaced name/ünï": {"type": "file", "ext": "../../../evil", "content_text": "x"},
        "images/../../up": {
            "type": "imageSeries",
            "steps": [1.0],
            "timestamps": [T0],
            "names": ["../../../name"],
            "descriptions": ["/etc/passwd"],
            "contents_base64": ["AAEC"],
        },
    }
    fixture = make_project([make_run(1, points=5, custom_id="../../../tmp/custom", extra=hostile)], models=False)
    out = tmp_path / "work" / "bundle"
    with serving(fixture) as info:
        result = export(info, out)
    assert not result.failed, result.failed
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*")}
    assert all(str(p).startswith("work") for p in written)
    assert all(p.parts[:2] == ("work", "bundle") for p in written if len(p.parts) > 1)
    run_files = {str(p.relative_to(out / "runs" / "VIS-1")) for p in (out / "runs" / "VIS-1").rglob("*")}
    assert run_files <= {"manifest.json", "COMPLETE", "files", "series_float.parquet", "series_string.parquet",
                         "series_file.parquet"} | {f for f in run_files if f.startswith("files/") and f.endswith(".zst")}
    run = manifest(out, "VIS-1")
    attrs = {a["path"]: a for a in run["attributes"]}
    entity = Bundle(out).entity("run", "VIS-1")
    entries = {e["entry"]: entity.read_file(e["hash"]) for e in attrs["source_code/files"]["entries"]}
    assert entries == {name: f"content of {name}".encode() for name in HOSTILE_ENTRIES}
    assert attrs["../../outside/attr"]["value"] == "path-like attribute name"
    assert attrs["spaced name/ünï"]["file"]["ext"] == "../../../evil"
    assert run["custom_run_id"] == "../../../tmp/custom"
    images = pd.concat(b.to_pandas() for b in entity.iter_series("file"))
    images = images[images["path"].astype(str) == "images/../../up"]
    assert list(images["name"]) == ["../../../name"] and list(images["description"]) == ["/etc/passwd"]


def test_export_info_records_the_selection(standard_server: EmulatorInfo, tmp_path: Path) -> None:
    export(standard_server, tmp_path / "b", models=False, runs=("VIS-1",), query="params/epochs:int > 0")
    info = json.loads((tmp_path / "b" / "export.json").read_text("utf-8"))
    assert info["format"] == "nmig-bundle" and info["format_version"] == "1.0"
    assert info["selection"]["runs"] == ["VIS-1"] and info["selection"]["query"] == "params/epochs:int > 0"
    assert info["selection"]["models"] is False and info["finished_at"] is not None
    assert standard_server.api_token not in (tmp_path / "b" / "export.json").read_text("utf-8")


def test_an_unknown_attribute_type_is_skipped_with_its_reason(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from nmig.exporter.entity import Counters, EntityExporter
    from nmig.exporter.source import EntityRef
    from nmig.schema import EntityWriter, write_export_info

    ref = EntityRef("run", "VIS-9", "container", None, None, False, "http://legacy/e/VIS-9")
    write_export_info(tmp_path, {"source": {}})
    with ThreadPoolExecutor(1) as pool, EntityWriter(tmp_path, "run", "VIS-9") as writer:
        exporter = EntityExporter(None, pool, Counters(), tmp_path)  # type: ignore[arg-type]  # never called
        exporter._export_attribute(ref, writer, "future/thing", "hologramSeries", {"frames": 3})
    skipped = manifest(tmp_path, "VIS-9")["skipped"]
    assert skipped == [
        {"path": "future/thing", "type": "hologramSeries", "reason": skipped[0]["reason"]}
    ] and "not known to nmig" in skipped[0]["reason"]


def test_cli_quiet_and_summary(standard_server: EmulatorInfo, tmp_path: Path, run_cli) -> None:  # type: ignore[no-untyped-def]
    args = ["export", "--project", "acme/vision", "--out", str(tmp_path / "b"), "--no-models", "--runs", "VIS-1", "VIS-[2]"]
    quiet = run_cli(*args, "--quiet", env={"NEPTUNE_API_TOKEN": standard_server.api_token})
    assert quiet.exit_code == 0 and quiet.stdout == ""
    assert "exported 2, already complete 0, incomplete 0" in quiet.stderr  # `--runs A B` takes both
    again = run_cli(*args, "--api-token", standard_server.api_token)
    assert again.exit_code == 0 and "exported 0, already complete 2" in again.stdout
    assert standard_server.api_token not in again.output + quiet.output
