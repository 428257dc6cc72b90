"""Crash safety, determinism, version checks and hostile or damaged bundles."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from nmig.errors import NmigError
from nmig.schema import Bundle, BundleError, EntityWriter, content_digest, safe_component, write_export_info
from nmig.schema import writer as writer_module


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _write_series(bundle: Path, order: str) -> Path:
    write_export_info(bundle, {})
    steps = np.arange(50_000, dtype=np.float64)
    values = np.sin(steps)
    stamps = (1_700_000_000_000 + steps * 10).astype(np.int64)
    with EntityWriter(bundle, "run", "D-1") as run:
        run.set_info(custom_run_id="c", source_url="u", modification_time=0)
        if order == "sequential":
            run.add_float_points("b", steps, values, stamps)
            run.add_float_points("a", steps, values * 2, stamps)
        else:  # interleaved, odd page sizes, list inputs
            for start in range(0, 50_000, 7_001):
                end = min(start + 7_001, 50_000)
                run.add_float_points("a", list(steps[start:end]), list(values[start:end] * 2), stamps[start:end])
                run.add_float_points("b", steps[start:end], values[start:end], list(stamps[start:end]))
        run.add_string_points("log", [0, 1], ["x", None], [5, 6])
        run.add_file("f", b"content" * 1000, name="f", ext="txt")
        run.add_atom("p", "float", math.nan)
    return bundle / "runs" / "D-1"


def test_same_data_gives_same_bytes_whatever_the_paging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "ROW_GROUP_ROWS", 12_345)  # several row groups, cut mid-path
    one = _write_series(tmp_path / "one", "sequential")
    monkeypatch.setattr(writer_module, "SPILL_BYTES", 100_000)  # and force spilling to disk on the second
    two = _write_series(tmp_path / "two", "interleaved")
    files_one, files_two = _files(one), _files(two)
    assert files_one.keys() == files_two.keys()
    differing = {name for name in files_one if files_one[name] != files_two[name]}
    assert differing <= {"manifest.json", "COMPLETE"}  # exported_at only
    assert content_digest(one) == content_digest(two)
    manifest_one = json.loads(files_one["manifest.json"])
    manifest_two = json.loads(files_two["manifest.json"])
    manifest_one.pop("exported_at"), manifest_two.pop("exported_at")
    assert manifest_one == manifest_two
    run = Bundle(tmp_path / "two").entity("run", "D-1")
    assert run.verify(deep=True) == []
    rows = [r for batch in run.iter_series("float", batch_rows=9999) for r in batch.to_pylist()]
    assert [r["path"] for r in rows[:1]] == ["a"] and len(rows) == 100_000
    assert rows[49_999]["step"] == 49_999.0 and rows[50_000]["path"] == "b" and rows[50_000]["step"] == 0.0
    assert rows[3]["value"] == pytest.approx(2 * math.sin(3.0), abs=0)


def _write_paths(bundle: Path, pages: list[tuple[str, int, int]]) -> Path:
    """Float series written page by page as (path, first step, points); each path's values depend on the path
    and step only, so any order of the same pages holds the same rows."""
    write_export_info(bundle, {})
    with EntityWriter(bundle, "run", "S-1") as run:
        run.set_info(custom_run_id="c", source_url="u", modification_time=0)
        for path in sorted({p for p, _, _ in pages}):
            run.declare_series(path, "floatSeries")
        for path, first, points in pages:
            steps = np.arange(first, first + points, dtype=np.float64)
            values = np.cos(steps) * (ord(path[-1]) - 96)
            run.add_float_points(path, steps, values, (1_700_000_000_000 + steps * 10).astype(np.int64))
        run.declare_series("z_empty", "floatSeries")
    return bundle / "runs" / "S-1"


def _pages(path: str, points: int, page: int) -> list[tuple[str, int, int]]:
    return [(path, start, min(page, points - start)) for start in range(0, points, page)]


def test_streamed_and_buffered_series_give_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Series arriving in path order are written as they come (row groups while fetching); any other order is
    buffered (and spilled) and written at commit. The Parquet bytes are the same either way, including when the
    order breaks after row groups were already written and must be read back."""
    monkeypatch.setattr(writer_module, "ROW_GROUP_ROWS", 10_000)
    monkeypatch.setattr(writer_module, "SPILL_BYTES", 200_000)
    a, b, c = _pages("m/a", 34_567, 3_000), _pages("m/b", 5, 5), _pages("m/c", 21_000, 7_000)
    in_order = _write_paths(tmp_path / "streamed", a + b + c)
    late_path = _write_paths(tmp_path / "late", a + c + b)  # 3 row groups of m/a written before m/b comes
    interleaved = _write_paths(tmp_path / "interleaved", [c[0], a[0], b[0], c[1], a[1], c[2], *a[2:]])
    reference = (in_order / "series_float.parquet").read_bytes()
    for other in (late_path, interleaved):
        assert (other / "series_float.parquet").read_bytes() == reference, other.name
        assert content_digest(other) == content_digest(in_order)
        assert not any((tmp_path / other.parent.parent.name / ".partial").glob("*")), "work folders left behind"
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(in_order / "series_float.parquet")
    assert parquet.metadata.num_rows == 34_567 + 5 + 21_000
    assert [parquet.metadata.row_group(i).num_rows for i in range(parquet.num_row_groups)] == [10_000] * 5 + [5_572]
    table = parquet.read()
    assert table.column("path").to_pylist()[34_565:34_570] == ["m/a", "m/a", "m/b", "m/b", "m/b"]
    assert table.column("step").to_pylist()[34_572] == 0.0 and table.column("path")[34_572].as_py() == "m/c"
    entity = Bundle(tmp_path / "late").entity("run", "S-1")
    assert entity.verify(deep=True) == []
    points = {a["path"]: a["points"] for a in entity.attributes}
    assert points == {"m/a": 34_567, "m/b": 5, "m/c": 21_000, "z_empty": 0}


def test_file_series_read_back_when_the_order_breaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "ROW_GROUP_ROWS", 2)  # "b" has a row group written when "a" comes

    def write(name: str, order: list[str]) -> bytes:
        write_export_info(tmp_path / name, {})
        with EntityWriter(tmp_path / name, "run", "F-1") as run:
            for path in order:
                for i in range(3):
                    content = f"{path}{i}".encode() * 10
                    run.add_file_series_point(path, float(i), 1000 + i, f"n{i}", None if i else "d", content,
                                              "png" if i else None)
        return (tmp_path / name / "runs" / "F-1" / "series_file.parquet").read_bytes()

    assert write("in_order", ["a", "b"]) == write("reversed", ["b", "a"])


def test_content_digest_sees_real_changes(tmp_path: Path) -> None:
    one = _write_series(tmp_path / "one", "sequential")
    with EntityWriter(tmp_path / "two", "run", "D-1") as run:
        run.add_float_points("a", [0.0], [1.0], [0])
    assert content_digest(one) != content_digest(tmp_path / "two" / "runs" / "D-1")


def test_abort_and_exception_leave_nothing_and_keep_the_old_copy(bundle_dir: Path, write_run) -> None:
    write_run(bundle_dir, "R-1")
    before = _files(bundle_dir / "runs" / "R-1")
    with pytest.raises(RuntimeError):
        with EntityWriter(bundle_dir, "run", "R-1") as run:
            run.add_atom("new", "int", 1)
            raise RuntimeError("export failed")
    writer = EntityWriter(bundle_dir, "run", "R-2")
    writer.add_file("f", b"x")
    writer.abort()
    assert _files(bundle_dir / "runs" / "R-1") == before
    assert not (bundle_dir / "runs" / "R-2").exists()
    assert list((bundle_dir / ".partial").iterdir()) == [] if (bundle_dir / ".partial").exists() else True


def test_update_replaces_the_old_copy(bundle_dir: Path, write_run) -> None:
    write_run(bundle_dir, "R-1")
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_atom("only", "int", 1)
    entity = Bundle(bundle_dir).entity("run", "R-1")
    assert [a["path"] for a in entity.attributes] == ["only"]
    assert not (entity.path / "files").exists() and entity.verify() == []


def test_errors_leave_the_entity_incomplete(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_atom("ok", "int", 1)
        run.error("metrics/loss", "HTTP 500 after 5 retries")
    entity = Bundle(bundle_dir).entity("run", "R-1")
    assert not entity.complete and not (entity.path / "COMPLETE").exists()
    assert "metrics/loss: HTTP 500 after 5 retries" in entity.incomplete_reason
    assert entity.errors == [{"path": "metrics/loss", "message": "HTTP 500 after 5 retries"}]


def test_killed_writer_leaves_old_copy_or_nothing(bundle_dir: Path, write_run) -> None:
    write_run(bundle_dir, "R-1")
    before = _files(bundle_dir / "runs" / "R-1")
    script = textwrap.dedent(f"""
        import os
        from nmig.schema import EntityWriter
        for sys_id in ("R-1", "R-2"):
            writer = EntityWriter({str(bundle_dir)!r}, "run", sys_id)
            writer.add_float_points("m", list(range(1000)), [0.5] * 1000, list(range(1000)))
            writer.add_file("f", b"partial")
        os._exit(9)  # killed before commit
    """)
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", script], timeout=60,
                            env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 9
    assert _files(bundle_dir / "runs" / "R-1") == before
    assert not (bundle_dir / "runs" / "R-2").exists()
    assert [e.sys_id for e in Bundle(bundle_dir).entities()] == ["R-1"]  # .partial is ignored
    writer_module.clean_partial(bundle_dir)
    assert not (bundle_dir / ".partial").exists()


@pytest.mark.parametrize(
    "name", ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "nul", "x\x00", "a:b", "trailing.", "x" * 201]
)
def test_safe_component_refuses_non_plain_names(name: str) -> None:
    with pytest.raises(BundleError):
        safe_component(name)


def test_writer_refuses_hostile_sys_ids(bundle_dir: Path) -> None:
    with pytest.raises(NmigError):
        EntityWriter(bundle_dir, "run", "../../escape")
    assert safe_component("SAN-123") == "SAN-123"


def test_newer_major_refused_newer_minor_accepted(bundle_dir: Path, write_run) -> None:
    write_run(bundle_dir, "R-1")
    write_run(bundle_dir, "R-2")
    info = json.loads((bundle_dir / "export.json").read_text())
    (bundle_dir / "export.json").write_text(json.dumps({**info, "format_version": "1.7"}))
    assert Bundle(bundle_dir).info["format_version"] == "1.7"
    manifest_path = bundle_dir / "runs" / "R-2" / "manifest.json"
    manifest_path.write_text(json.dumps({**json.loads(manifest_path.read_text()), "format_version": "2.0"}))
    entities = Bundle(bundle_dir).entities()
    assert [e.complete for e in entities] == [True, False]  # the bad one is reported, the other reads
    assert "newer than this nmig supports" in entities[1].incomplete_reason
    (bundle_dir / "export.json").write_text(json.dumps({**info, "format_version": "2.0"}))
    with pytest.raises(BundleError, match=r"bundle format 2\.0, newer than this nmig supports \(1\.x\)"):
        Bundle(bundle_dir)


def test_not_a_bundle_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such folder"):
        Bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match="not an nmig bundle"):
        Bundle(tmp_path)
    (tmp_path / "export.json").write_text("{ not json")
    with pytest.raises(BundleError, match="unreadable"):
        Bundle(tmp_path)
    write_export_info(tmp_path, {})
    (tmp_path / "export.json").write_text(json.dumps({"format": "other", "format_version": "1.0"}))
    with pytest.raises(BundleError, match="not an nmig-bundle"):
        Bundle(tmp_path)


def test_tampering_is_found(sample_bundle: Path) -> None:
    folder = sample_bundle / "runs" / "VIS-1"
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    assert run.verify(deep=True) == []
    main_hash = run.attribute("source/main")["file"]["hash"]
    stored = folder / "files" / f"{main_hash}.zst"
    import zstandard

    stored.write_bytes(zstandard.ZstdCompressor().compress(b"print('evil')\n"))
    (folder / "files" / "stray.txt").write_text("x")
    parquet = folder / "series_float.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-1] + b"X")
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    problems = run.verify(deep=True)
    assert any(f"files/{main_hash}.zst does not match its checksum" in p for p in problems)
    assert any(f"file {main_hash[:12]}... is larger than the manifest says" in p for p in problems)
    assert any("files/stray.txt is not listed in COMPLETE" in p for p in problems)
    assert any("series_float.parquet does not match its checksum" in p for p in problems)
    with pytest.raises(BundleError):
        run.read_file(main_hash)
    with pytest.raises(BundleError, match="checksum"):
        list(run.iter_series("float"))


def test_manifest_names_never_become_paths(sample_bundle: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    folder = sample_bundle / "runs" / "VIS-1"
    (folder / "COMPLETE").unlink()  # an incomplete, hand-edited entity: no checksums to lean on
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["attributes"].append({"path": "evil", "type": "file",
                                   "file": {"hash": "../../../secret.txt", "size": 6, "name": "x", "ext": "y"}})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    with pytest.raises(BundleError, match="invalid content hash"):
        run.read_file("../../../secret.txt")
    with pytest.raises(BundleError, match="invalid content hash"):
        run.open_file("A" * 64)
    assert any("attribute 'evil'.file.hash is '../../../secret.txt'" in p for p in run.verify())
    assert "'evil'.file.hash" in str(run.incomplete_reason)  # the manifest's shape is the first reason
    (sample_bundle / "runs" / "not..safe").mkdir()
    (sample_bundle / "runs" / ".sneaky").mkdir()
    bundle = Bundle(sample_bundle)
    assert bundle.sys_ids() == ["VIS-1", "not..safe"]
    assert bundle.strays() == [".sneaky"]
    with pytest.raises(BundleError):
        bundle.entity("run", "../runs/VIS-1")


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks")
def test_symlinked_entity_folder_is_not_followed(sample_bundle: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, sample_bundle / "runs" / "LINK-1")
    bundle = Bundle(sample_bundle)
    assert "LINK-1" in bundle.strays()
    with pytest.raises(BundleError):
        bundle.entity("run", "LINK-1")


def test_decompression_is_bounded_by_the_recorded_size(bundle_dir: Path) -> None:
    import zstandard

    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_file_series_point("images/x", 0, 0, "n", None, b"tiny", "png")
    entity = Bundle(bundle_dir).entity("run", "R-1")
    content_hash = next(entity.iter_series("file")).column("file_hash")[0].as_py()
    stored = entity.path / "files" / f"{content_hash}.zst"
    stored.write_bytes(zstandard.ZstdCompressor().compress(b"\0" * 50_000_000))  # a bomb in its place
    with pytest.raises(BundleError, match="larger than the manifest says"):
        entity.read_file(content_hash)  # no size given: taken from series_file.parquet


def test_a_damaged_file_series_is_reported_and_manifest_files_stay_readable(sample_bundle: Path) -> None:
    folder = sample_bundle / "runs" / "VIS-1"
    (folder / "COMPLETE").unlink()  # no checksums: the damage must be found by reading the series file itself
    (folder / "series_file.parquet").write_bytes(b"not parquet")
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    problems = run.verify()
    assert any(p.startswith("run VIS-1: series_file.parquet is unreadable") for p in problems), problems
    main_hash = run.attribute("source/main")["file"]["hash"]
    assert run.read_file(main_hash) == b"print('hi')\n"  # its size still comes from the manifest


def test_numpy_scalars_are_accepted_as_their_python_values(bundle_dir: Path) -> None:
    with EntityWriter(bundle_dir, "run", "R-1") as run:
        run.add_atom("i", "int", np.int64(2**62))
        run.add_atom("b", "bool", np.bool_(True))
        run.add_atom("f", "float", np.float32(0.5))
    values = {a["path"]: a["value"] for a in Bundle(bundle_dir).entity("run", "R-1").attributes}
    assert values == {"i": 2**62, "b": True, "f": 0.5}
    assert type(values["i"]) is int and type(values["b"]) is bool


def test_symlinks_inside_an_entity_are_not_followed(sample_bundle: Path, tmp_path: Path) -> None:
    folder = sample_bundle / "runs" / "VIS-1"
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    main_hash = run.attribute("source/main")["file"]["hash"]
    outside = tmp_path / "outside.zst"
    (folder / "files" / f"{main_hash}.zst").rename(outside)
    os.symlink(outside, folder / "files" / f"{main_hash}.zst")
    run = Bundle(sample_bundle).entity("run", "VIS-1")
    with pytest.raises(BundleError, match="not a regular file"):
        run.read_file(main_hash)
    problems = run.verify()
    assert any(f"files/{main_hash}.zst is a symlink" in p for p in problems)
    assert any(f"files/{main_hash}.zst is missing" in p for p in problems)


def test_concurrent_writers_of_one_entity_give_the_sequential_result(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def fill(run: EntityWriter, index: int) -> None:
        steps = np.arange(index * 10, index * 10 + 3000, dtype=np.float64)
        for start in range(0, 3000, 500):
            run.add_float_points(f"m/{index}", steps[start:start + 500], steps[start:start + 500] / 7,
                                 steps[start:start + 500].astype(np.int64))
        run.add_file(f"f/{index}", bytes([index]) * 100_000 + b"shared" * 1000, name=str(index), ext="bin")
        run.add_file(f"g/{index}", b"same everywhere", name="g", ext=None)

    write_export_info(tmp_path / "seq", {})
    with EntityWriter(tmp_path / "seq", "run", "C-1") as run:
        for index in range(8):
            fill(run, index)
    write_export_info(tmp_path / "par", {})
    with EntityWriter(tmp_path / "par", "run", "C-1") as run, ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: fill(run, i), reversed(range(8))))
    sequential = Bundle(tmp_path / "seq").entity("run", "C-1")
    parallel = Bundle(tmp_path / "par").entity("run", "C-1")
    assert parallel.verify(deep=True) == []
    assert content_digest(sequential) == content_digest(parallel)
