"""Every attribute type written by EntityWriter reads back exactly through Bundle/EntityBundle."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nmig.schema import Bundle, EntityWriter, decode_atom


def _atoms(entity) -> dict:
    return {a["path"]: decode_atom(a["type"], a["value"]) for a in entity.attributes if "value" in a
            and a["type"] in ("float", "int", "bool", "string", "datetime")}


def test_atoms_round_trip_exactly(sample_bundle: Path, sample_constants: dict) -> None:
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    assert run.complete and run.incomplete_reason is None
    atoms = _atoms(run)
    assert atoms["params/lr"] == 0.1
    assert math.isnan(atoms["params/nan"])
    assert atoms["params/inf"] == math.inf and atoms["params/ninf"] == -math.inf
    assert atoms["params/big"] == sample_constants["big_int"] and isinstance(atoms["params/big"], int)
    assert atoms["params/neg"] == -7
    assert atoms["params/flag"] is False
    assert atoms["params/name"] == "naïve ✓"
    expected_time = dt.datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=dt.timezone.utc)
    assert atoms["sys/creation_time"] == expected_time
    assert run.manifest["modification_time"] == "2024-05-01T12:00:00.123Z"
    assert run.custom_run_id == "custom-1"
    # The raw JSON form of the contract.
    raw = {a["path"]: a for a in run.attributes}
    assert raw["params/nan"]["value"] == "NaN" and raw["params/ninf"]["value"] == "-Infinity"
    assert raw["sys/tags"] == {"path": "sys/tags", "type": "stringSet", "values": ["a", "b", "c"]}
    assert raw["source/git"]["value"] == {"commit": {"commitId": "abc"}, "repositoryDirty": False}
    assert raw["sys/state"]["value"] == "idle"
    assert raw["data/ds"]["hash"] == "ab" * 32 and raw["data/ds"]["files"][0]["filePath"] == "s3://b/k"
    assert run.skipped == [{"path": "weird/thing", "type": "newType",
                            "reason": "type newType is not known to nmig 0.1.0"}]


def test_series_round_trip_grouped_by_path(sample_bundle: Path) -> None:
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    floats = pa.Table.from_batches(list(run.iter_series("float"))).to_pylist()
    assert [(r["path"], r["step"]) for r in floats] == [
        ("metrics/acc", 0.0), ("metrics/loss", 0.0), ("metrics/loss", 1.0), ("metrics/loss", 2.0)]
    values = [r["value"] for r in floats]
    assert values[0] == math.inf and values[1] == 1.5 and math.isnan(values[2]) and values[3] == -math.inf
    assert [r["timestamp"] for r in floats][1] == dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.timezone.utc)
    attrs = {a["path"]: a for a in run.attributes}
    assert attrs["metrics/loss"]["points"] == 3 and attrs["metrics/loss"]["last_step"] == 2.0
    assert attrs["metrics/empty"] == {"path": "metrics/empty", "type": "floatSeries", "points": 0,
                                      "last_step": None}
    strings = pa.Table.from_batches(list(run.iter_series("string"))).to_pylist()
    assert [r["value"] for r in strings] == ["first", "second"]
    files = pa.Table.from_batches(list(run.iter_series("file"))).to_pylist()
    assert [(r["step"], r["name"], r["description"], r["ext"], r["file_size"]) for r in files] == [
        (3.0, "img-3", "third", "png", 6), (4.0, "img-4", None, "png", 6)]
    assert run.read_file(files[1]["file_hash"]) == b"\x89PNG-4"
    assert attrs["images/sample"] == {"path": "images/sample", "type": "imageSeries", "points": 2}


def test_parquet_schema_matches_contract_and_opens_with_pandas(sample_bundle: Path) -> None:
    folder = sample_bundle / "runs" / "VIS-1"
    schema = pq.read_schema(folder / "series_float.parquet")
    assert schema.field("step").type == pa.float64() and schema.field("value").type == pa.float64()
    assert schema.field("timestamp").type == pa.timestamp("ms", tz="UTC")
    assert pa.types.is_dictionary(schema.field("path").type)
    meta = pq.ParquetFile(folder / "series_float.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"
    frame = pd.read_parquet(folder / "series_string.parquet")
    assert list(frame.columns) == ["path", "step", "value", "timestamp"]
    assert str(frame["timestamp"].dt.tz) == "UTC"
    files = pd.read_parquet(folder / "series_file.parquet")
    assert list(files.columns) == ["path", "step", "timestamp", "name", "description", "file_hash",
                                   "file_size", "ext"]


def test_files_and_filesets_dedupe_and_keep_entry_names_as_data(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_file("a", b"same", name="a", ext="bin")
        run.add_fileset("set", [("../../outside", b"same"), ("/abs/path", b"other")])
    entity = Bundle(bundle_dir).entity("run", "R-1")
    stored = sorted(p.name for p in (entity.path / "files").iterdir())
    assert len(stored) == 2  # "same" stored once
    entries = entity.attribute("set")["entries"]
    assert [e["entry"] for e in entries] == ["../../outside", "/abs/path"]
    assert entity.read_file(entries[0]["hash"]) == b"same"
    assert not (bundle_dir.parent / "outside").exists() and not Path("/abs/path").exists()
    assert entity.verify(deep=True) == []


def test_streamed_file_content_and_paths(bundle_dir: Path, tmp_path: Path) -> None:
    big = bytes(range(256)) * 20000  # 5 MB, several zstd chunks
    source = tmp_path / "src.bin"
    source.write_bytes(big)

    class Trickle:  # a stream returning short reads, like a socket
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            piece = self.data[self.pos : self.pos + min(n, 7777)]
            self.pos += len(piece)
            return piece

    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_file("from_path", source, name="src", ext="bin")
    with EntityWriter(bundle_dir, "run", "R-2") as run:
        run.add_file("from_stream", Trickle(big), name="src", ext="bin")
    one = Bundle(bundle_dir).entity("run", "R-1")
    two = Bundle(bundle_dir).entity("run", "R-2")
    h = one.attribute("from_path")["file"]["hash"]
    assert two.attribute("from_stream")["file"] == {"hash": h, "size": len(big), "name": "src", "ext": "bin"}
    # Same content however it was fed: byte-identical compressed file.
    assert (one.path / "files" / f"{h}.zst").read_bytes() == (two.path / "files" / f"{h}.zst").read_bytes()
    with one.open_file(h) as stream:
        assert stream.read(10) == big[:10]
        assert stream.read() == big[10:]


def test_timestamps_never_go_through_local_time(kolkata_tz: None, bundle_dir: Path) -> None:
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 678999)  # naive = UTC by the format's rule
    with EntityWriter(bundle_dir, "run", "TZ-1") as run:
        run.set_info(modification_time=dt.datetime(2024, 1, 2, 8, 34, 5, 678000,
                                                   tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))))
        run.add_atom("naive", "datetime", naive)
        run.add_atom("string", "datetime", "2024-01-02T03:04:05.678Z")
        run.add_float_points("m", [0], [1.0], [1704164645678])
    run = Bundle(bundle_dir).entity("run", "TZ-1")
    assert run.manifest["modification_time"] == "2024-01-02T03:04:05.678Z"
    assert run.attribute("naive")["value"] == "2024-01-02T03:04:05.678Z"
    assert run.attribute("string")["value"] == "2024-01-02T03:04:05.678Z"
    row = pa.Table.from_batches(list(run.iter_series("float"))).to_pylist()[0]
    assert row["timestamp"] == dt.datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    frame = pd.read_parquet(run.path / "series_float.parquet")
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2024-01-02T03:04:05.678Z")


def test_models_and_versions_have_their_own_folders(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "model", "PROJ-MOD") as model:
        model.add_atom("sys/name", "string", "m")
    with EntityWriter(bundle_dir, "model_version", "PROJ-MOD-1") as version:
        version.add_atom("sys/stage", "string", "production")
    bundle = Bundle(bundle_dir)
    assert [e.sys_id for e in bundle.entities("model")] == ["PROJ-MOD"]
    assert [e.sys_id for e in bundle.entities("model_version")] == ["PROJ-MOD-1"]
    assert bundle.entities("run") == []
    assert (bundle_dir / "model_versions" / "PROJ-MOD-1" / "COMPLETE").is_file()


def test_writer_refuses_wrong_values_and_duplicates(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        with pytest.raises(TypeError):
            run.add_atom("x", "int", True)
        with pytest.raises(TypeError):
            run.add_atom("x", "bool", 1)
        with pytest.raises(ValueError):
            run.add_atom("x", "floatSeries", 1.0)
        with pytest.raises(ValueError):
            run.add_raw("x", "gitRef", {"v": math.nan})
        run.add_atom("x", "int", 1)
        with pytest.raises(ValueError):
            run.add_atom("x", "int", 2)
        with pytest.raises(ValueError):
            run.add_float_points("x", [0], [1.0], [0])
        run.add_float_points("s", [0], [1.0], [0])
        with pytest.raises(ValueError):
            run.add_string_points("s", [1], ["a"], [0])
        with pytest.raises(ValueError):
            run.add_float_points("t", [0, 1], [1.0], [0, 1])
    assert Bundle(bundle_dir).entity("run", "R-1").complete


def test_unknown_kind_is_refused(sample_bundle: Path) -> None:
    from nmig.schema import BundleError

    with pytest.raises(BundleError, match="unknown entity kind"):
        Bundle(sample_bundle).entities("experiment")
    with pytest.raises(ValueError, match="unknown entity kind"):
        EntityWriter(sample_bundle, "experiment", "X-1")
