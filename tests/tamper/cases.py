"""The tampered shapes: each a function that damages one run of a copy of the exported bundle.

`outside` is a folder next to the bundle: whatever a symlink of a case points at lives there, as FIFOs with
no writer wherever a reader following the link would open a file (so following one hangs, and the time
limit fails the case) and as copies of the run's own files wherever it would list a folder.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

Tamper = Callable[[Path, Path], None]


@dataclass(frozen=True)
class Case:
    name: str
    run: str  # the run damaged
    tamper: Tamper
    resign: bool = True  # COMPLETE rewritten over the damage (impossible when COMPLETE itself is the damage)


def _manifest(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "manifest.json").read_text())


def _write_manifest(run_dir: Path, manifest: dict[str, Any], raw: dict[str, str] | None = None) -> None:
    text = json.dumps(manifest)
    for placeholder, literal in (raw or {}).items():
        text = text.replace(json.dumps(placeholder), literal)  # JSON Python would not write (1e400)
    (run_dir / "manifest.json").write_text(text)


def _attribute(manifest: dict[str, Any], path: str) -> dict[str, Any]:
    return next(a for a in manifest["attributes"] if a["path"] == path)


def set_field(path: str, keys: tuple[str, ...], value: Any, raw: str | None = None) -> Tamper:
    """attribute[path][keys...] = value (or the literal JSON text `raw`)."""

    def tamper(run_dir: Path, outside: Path) -> None:
        manifest = _manifest(run_dir)
        target = _attribute(manifest, path)
        for key in keys[:-1]:
            target = target[key]
        marker = "@@raw@@"
        target[keys[-1]] = marker if raw is not None else value
        _write_manifest(run_dir, manifest, {marker: raw} if raw is not None else None)

    return tamper


def drop_field(path: str, keys: tuple[str, ...]) -> Tamper:
    def tamper(run_dir: Path, outside: Path) -> None:
        manifest = _manifest(run_dir)
        target = _attribute(manifest, path)
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]
        _write_manifest(run_dir, manifest)

    return tamper


def set_top(key: str, value: Any) -> Tamper:
    def tamper(run_dir: Path, outside: Path) -> None:
        manifest = _manifest(run_dir)
        manifest[key] = value
        _write_manifest(run_dir, manifest)

    return tamper


def duplicate_attribute(path: str) -> Tamper:
    def tamper(run_dir: Path, outside: Path) -> None:
        manifest = _manifest(run_dir)
        manifest["attributes"].append(dict(_attribute(manifest, path)))
        _write_manifest(run_dir, manifest)

    return tamper


def _stored(run_dir: Path, path: str) -> Path:
    return run_dir / "files" / f"{_attribute(_manifest(run_dir), path)['file']['hash']}.zst"


def replace_content(path: str, content: bytes) -> Tamper:
    """The stored file of `path` replaced by other content under the same name (hash)."""

    def tamper(run_dir: Path, outside: Path) -> None:
        _stored(run_dir, path).write_bytes(zstandard.ZstdCompressor().compress(content))

    return tamper


def zstd_bomb(path: str, expanded: int = 256 * 1024 * 1024) -> Tamper:
    """A small .zst expanding to `expanded` zero bytes where the manifest declares far fewer."""

    def tamper(run_dir: Path, outside: Path) -> None:
        compressor = zstandard.ZstdCompressor(level=1)
        chunk = bytes(1 << 20)
        with open(_stored(run_dir, path), "wb") as fh, compressor.stream_writer(fh, closefd=False) as writer:
            for _ in range(expanded >> 20):
                writer.write(chunk)

    return tamper


def garbage_zst(path: str) -> Tamper:
    def tamper(run_dir: Path, outside: Path) -> None:
        _stored(run_dir, path).write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(64))

    return tamper


def fifo_at(relpath: str) -> Tamper:
    def tamper(run_dir: Path, outside: Path) -> None:
        target = run_dir / relpath
        target.unlink()
        os.mkfifo(target)

    return tamper


def device_at(relpath: str) -> Tamper:
    """A character device (/dev/zero's numbers: endless zeros if read) in place of a file."""

    def tamper(run_dir: Path, outside: Path) -> None:
        target = run_dir / relpath
        target.unlink()
        os.mknod(target, stat.S_IFCHR | 0o600, os.makedev(1, 5))

    return tamper


def symlink_out(relpath: str) -> Tamper:
    """The file replaced by a symlink to a FIFO outside the bundle (following it blocks)."""

    def tamper(run_dir: Path, outside: Path) -> None:
        target = run_dir / relpath
        fifo = outside / f"fifo-{target.name}"
        os.mkfifo(fifo)
        target.unlink()
        os.symlink(fifo, target)

    return tamper


def symlink_files_folder(run_dir: Path, outside: Path) -> None:
    """files/ moved outside and replaced by a symlink to it; the moved files become FIFOs."""
    moved = outside / "files"
    shutil.move(str(run_dir / "files"), moved)
    for item in moved.iterdir():
        item.unlink()
        os.mkfifo(item)
    os.symlink(moved, run_dir / "files")


def series_value_as_string(run_dir: Path, outside: Path) -> None:
    """series_float.parquet rewritten with its value column as strings (right column names, wrong schema)."""
    path = run_dir / "series_float.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("value")
    table = table.set_column(index, "value", pa.array([str(v) for v in table.column("value").to_pylist()]))
    pq.write_table(table, path)


def series_missing_rows(run_dir: Path, outside: Path) -> None:
    path = run_dir / "series_float.parquet"
    table = pq.read_table(path)
    pq.write_table(table.slice(0, table.num_rows - 1), path)


def garbage_parquet(run_dir: Path, outside: Path) -> None:
    (run_dir / "series_float.parquet").write_bytes(b"PAR1" + os.urandom(200) + b"PAR1")


def file_series_negative_size(run_dir: Path, outside: Path) -> None:
    path = run_dir / "series_file.parquet"
    table = pq.read_table(path)
    index = table.schema.get_field_index("file_size")
    table = table.set_column(index, table.schema.field(index), pa.array([-1] * table.num_rows, pa.int64()))
    pq.write_table(table, path)


def extra_file(run_dir: Path, outside: Path) -> None:
    (run_dir / "notes.txt").write_text("not part of the format")


def manifest_not_json(run_dir: Path, outside: Path) -> None:
    (run_dir / "manifest.json").write_text('{"format": "nmig-bundle", ')


def manifest_a_list(run_dir: Path, outside: Path) -> None:
    (run_dir / "manifest.json").write_text("[1, 2, 3]")


BIG = "1" + "0" * 30

CASES = [
    # the manifest's shape
    Case("points_a_string", "AT-2", set_field("train/loss", ("points",), "abc")),
    Case("points_1e400", "AT-2", set_field("train/loss", ("points",), None, raw="1e400")),
    Case("points_a_list", "AT-2", set_field("train/loss", ("points",), [5])),
    Case("points_negative", "AT-2", set_field("train/loss", ("points",), -3)),
    Case("points_a_float", "AT-2", set_field("train/loss", ("points",), 5.0)),
    Case("last_step_an_object", "AT-2", set_field("train/loss", ("last_step",), {"x": 1})),
    Case("git_commit_date_1e300", "AT-1", set_field("source_code/git", ("value", "commit", "commitDate"), 1e300)),
    Case("git_commit_a_number", "AT-1", set_field("source_code/git", ("value", "commit"), 7)),
    Case("string_set_a_number", "AT-1", set_field("params/layers", ("values",), 5)),
    Case("string_set_a_string", "AT-1", set_field("params/layers", ("values",), "abc")),
    Case("string_set_of_numbers", "AT-1", set_field("params/layers", ("values",), [1, 2])),
    Case("float_1e400", "AT-1", set_field("params/lr", ("value",), None, raw="1e400")),
    Case("float_a_list", "AT-1", set_field("params/lr", ("value",), [0.1])),
    Case("int_a_float", "AT-1", set_field("params/epochs", ("value",), 10.5)),
    Case("bool_a_string", "AT-1", set_field("params/augment", ("value",), "yes")),
    Case("datetime_malformed", "AT-1", set_field("params/started", ("value",), "yesterday")),
    Case("datetime_month_13", "AT-1", set_field("params/started", ("value",), "2023-13-01T10:00:01.500Z")),
    Case("artifact_files_a_string", "AT-1", set_field("datasets/train", ("files",), "x")),
    Case("attribute_path_a_number", "AT-1", set_field("params/lr", ("path",), 12)),
    Case("attribute_twice", "AT-1", duplicate_attribute("params/lr")),
    Case("attributes_an_object", "AT-1", set_top("attributes", {"a": 1})),
    Case("custom_run_id_a_number", "AT-1", set_top("custom_run_id", 5)),
    Case("kind_unknown", "AT-1", set_top("kind", "experiment")),
    Case("manifest_not_json", "AT-1", manifest_not_json),
    Case("manifest_a_list", "AT-1", manifest_a_list),
    Case("file_set_entries_a_number", "AT-3", set_field("source_code/files", ("entries",), 7)),
    Case("file_set_entry_without_size", "AT-3", drop_field("source_code/files", ("entries", 0, "size"))),
    # declared sizes
    Case("size_minus_one", "AT-3", set_field("files/notes", ("file", "size"), -1)),
    Case("size_1e18", "AT-3", set_field("files/notes", ("file", "size"), 10**18)),
    Case("size_huge_literal", "AT-3", set_field("files/notes", ("file", "size"), None, raw=BIG)),
    Case("size_a_string", "AT-3", set_field("files/notes", ("file", "size"), "16")),
    Case("size_missing", "AT-3", drop_field("files/notes", ("file", "size"))),
    Case("size_too_small", "AT-3", set_field("files/notes", ("file", "size"), 3)),
    Case("hash_not_hex", "AT-3", set_field("files/notes", ("file", "hash"), "../../../etc/passwd")),
    # stored content
    Case("content_not_its_hash", "AT-3", replace_content("files/notes", b"sixteen bytes!!!")),
    Case("zstd_bomb_declaring_16_bytes", "AT-3", zstd_bomb("files/notes")),
    Case("zst_garbage", "AT-3", garbage_zst("files/notes")),
    # series files
    Case("series_value_as_strings", "AT-2", series_value_as_string),
    Case("series_row_missing", "AT-2", series_missing_rows),
    Case("series_garbage", "AT-2", garbage_parquet),
    Case("file_series_negative_size", "AT-2", file_series_negative_size),
    Case("unlisted_extra_file", "AT-2", extra_file),
    # what is opened
    Case("manifest_a_fifo", "AT-1", fifo_at("manifest.json"), resign=False),
    Case("complete_a_fifo", "AT-1", fifo_at("COMPLETE"), resign=False),
    Case("series_a_fifo", "AT-2", fifo_at("series_float.parquet")),
    Case("series_a_device", "AT-2", device_at("series_float.parquet")),
    Case("manifest_a_symlink_out", "AT-1", symlink_out("manifest.json"), resign=False),
    Case("series_a_symlink_out", "AT-2", symlink_out("series_float.parquet")),
    Case("files_folder_a_symlink_out", "AT-3", symlink_files_folder),
]
