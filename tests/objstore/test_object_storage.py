"""Bundles on object storage: the real commands and the pandas API against a real S3 HTTP server on loopback
(moto's server mode, started here), read and written through s3fs; nothing is mocked in-process."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nmig.cli import main
from nmig.emulators.http import EmulatorInfo

sys.path.insert(0, str(Path(__file__).parents[1]))
from s3_server import BUCKET, SECRET, s3_env, serve_s3  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PROJECT = "demo/vision"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    with serve_s3() as options:
        yield options


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.sample import sample_fixture

    with serve_legacy(sample_fixture(runs=3, points=40)) as info:
        yield info


def fs(options: dict[str, Any]) -> Any:
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, **options)


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(main, list(args), env={"NEPTUNE_API_TOKEN": "", **(env or {})})
    assert SECRET not in result.output and SECRET not in (result.stderr or "")
    return result


def export(legacy: EmulatorInfo, out: str, options: dict[str, Any]) -> Any:
    return invoke("export", "--project", "acme/vision", "--out", out, "--api-token", legacy.api_token, "--quiet",
                  "--storage-options", json.dumps(options), "--max-workers", "2")


def test_export_inspect_import_verify_on_s3(
    s3: dict[str, Any], legacy: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    monkeypatch.chdir(tmp_path)
    url = f"s3://{BUCKET}/e2e/bundle"
    result = export(legacy, url, s3)
    assert result.exit_code == 0, result.output
    assert "exported 7," in result.output  # three runs, models and model versions
    store = fs(s3)
    assert store.exists(f"{BUCKET}/e2e/bundle/export.json") and store.exists(f"{BUCKET}/e2e/bundle/export.log")
    assert not store.exists(f"{BUCKET}/e2e/bundle/.nmig-export.lock")  # released
    assert not store.exists(f"{BUCKET}/e2e/bundle/.partial")  # work in progress stays on this machine

    result = invoke("inspect", url, "--check", "--storage-options", json.dumps(s3))
    assert result.exit_code == 0, result.output

    # the import's state and report go on the store beside the bundle (nothing on this machine), and verify
    # finds them there
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), **s3_env(s3)}
    with serve_neptune3(data_dir=tmp_path / "neptune3") as target:
        result = invoke("import", url, "--project", PROJECT, "--api-token", target.api_token, "--quiet", env=env)
        assert result.exit_code == 0, result.output
        assert not (tmp_path / "state").exists()
        prefix = f"{BUCKET}/e2e/bundle"
        assert sorted(p.rsplit("/", 1)[-1] for p in store.ls(prefix, refresh=True) if "import-" in p) == [
            "import-report.demo__vision.json", "import-state.demo__vision.json", "import-state.demo__vision.synced",
        ]  # the lock object is gone with the import
        assert json.loads(store.cat_file(f"{prefix}/import-state.demo__vision.json"))["bundle"] == url
        assert len(store.ls(f"{prefix}/import-state.demo__vision.synced", refresh=True)) == 3  # a record per run
        result = invoke("verify", url, "--project", PROJECT, "--api-token", target.api_token, "--quiet", env=env)
        assert result.exit_code == 0, result.output
        # a second import finds everything imported (the state found again on the store)
        result = invoke("import", url, "--project", PROJECT, "--api-token", target.api_token, "--quiet", env=env)
        assert result.exit_code == 0 and "3 already imported" in result.output, result.output


def test_resume_exports_again_an_entity_without_complete(
    s3: dict[str, Any], legacy: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"s3://{BUCKET}/resume/bundle"
    assert export(legacy, url, s3).exit_code == 0
    store = fs(s3)
    runs = sorted(p.rsplit("/", 1)[-1] for p in store.ls(f"{BUCKET}/resume/bundle/runs"))
    victim = f"{BUCKET}/resume/bundle/runs/{runs[0]}"
    # what a kill in the middle of publishing leaves: no COMPLETE, an object of a half-written version
    store.rm(f"{victim}/COMPLETE")
    store.pipe(f"{victim}/files/{'0' * 64}.zst", b"left over")
    kept = store.info(f"{BUCKET}/resume/bundle/runs/{runs[1]}/COMPLETE")["ETag"]

    result = export(legacy, url, s3)
    assert result.exit_code == 0, result.output
    assert "exported 1, already complete 6" in result.output
    assert store.exists(f"{victim}/COMPLETE") and not store.exists(f"{victim}/files/{'0' * 64}.zst")
    assert store.info(f"{BUCKET}/resume/bundle/runs/{runs[1]}/COMPLETE")["ETag"] == kept  # not rewritten
    assert invoke("inspect", url, "--check", "--storage-options", json.dumps(s3)).exit_code == 0


def test_a_tampered_object_is_refused(s3: dict[str, Any], legacy: EmulatorInfo, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"s3://{BUCKET}/tamper/bundle"
    assert export(legacy, url, s3).exit_code == 0
    store = fs(s3)
    run = sorted(store.ls(f"{BUCKET}/tamper/bundle/runs"))[0]
    data = bytearray(store.cat(f"{run}/series_float.parquet"))
    data[len(data) // 2] ^= 0xFF
    store.pipe(f"{run}/series_float.parquet", bytes(data))
    result = invoke("inspect", url, "--check", "--storage-options", json.dumps(s3))
    assert result.exit_code == 1
    assert "series_float.parquet does not match its checksum" in result.output

    from nmig.schema import Bundle, BundleError, validate_entity

    # what the import checks before it sends anything, and the pandas API refusing the damaged file
    entity = Bundle(url, s3).entity("run", run.rsplit("/", 1)[-1])
    assert any("series_float.parquet does not match its checksum" in p for p in validate_entity(entity))
    with pytest.raises(BundleError, match="does not match its checksum"):
        entity.open_series("float")


def test_pandas_api_reads_a_url_as_a_folder(s3: dict[str, Any], tmp_path: Path) -> None:
    """The same entity written to a folder and to S3 has the same content, and reads back the same."""
    import nmig.schema as schema

    def write(root: str | Path, options: dict[str, Any] | None) -> None:
        schema.write_export_info(root, {"source": {"workspace": "acme", "project": "p"}}, options)
        with schema.EntityWriter(root, "run", "P-1", options) as writer:
            writer.add_atom("params/lr", "float", 0.125)
            writer.add_float_points("loss", [0.0, 1.0, 2.5], [float("nan"), -0.0, 1e308], [1000, 2000, 3000])
            writer.add_file("model", b"weights" * 1000, name="model", ext="bin")

    url = f"s3://{BUCKET}/pandas/bundle"
    write(tmp_path / "local", None)
    write(url, s3)
    remote = schema.read_float_series(url, storage_options=s3)
    local = schema.read_float_series(tmp_path / "local")
    assert remote.equals(local) and len(remote) == 3
    assert schema.read_file(url, "P-1", "model", storage_options=s3) == b"weights" * 1000
    assert schema.read_runs(url, storage_options=s3)["complete"].tolist() == [True]
    assert schema.content_digest(schema.Bundle(url, s3).entity("run", "P-1")) == schema.content_digest(
        schema.Bundle(tmp_path / "local").entity("run", "P-1")
    )


def test_one_export_per_prefix(s3: dict[str, Any]) -> None:
    from nmig.errors import NmigError
    from nmig.schema import open_root

    root = open_root(f"s3://{BUCKET}/locked", s3)
    with root.lock(".nmig-export.lock", "busy"):
        with pytest.raises(NmigError, match="busy"):
            with open_root(f"s3://{BUCKET}/locked", s3).lock(".nmig-export.lock", "busy"):
                pass
    with root.lock(".nmig-export.lock", "busy"):  # released, so it can be taken again
        pass


def test_an_object_replaced_while_being_read_comes_back_whole(s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The shards of one export rewrite export.json while the others read it. A writer that replaces the
    object with a longer one between the reader's HEAD and its GET must not cut the new content to the old
    size (CI saw `Unterminated string` from exactly that); the reader gets one version, whole."""
    from nmig.schema import open_root
    from nmig.schema.format import BundleError

    root = open_root(f"s3://{BUCKET}/replaced", s3)
    old, new = json.dumps({"shards": ["1/4"]}).encode(), json.dumps({"shards": ["1/4", "2/4"] * 50}).encode()
    root.write_bytes("export.json", old)
    head = type(root)._info
    replaced: list[str] = []

    def head_then_replace(self: Any, key: str) -> Any:
        info = head(self, key)
        if not replaced:  # the other shard's PUT lands right after this reader's HEAD
            replaced.append(key)
            fs(s3).pipe_file(key, new)
        return info

    monkeypatch.setattr(type(root), "_info", head_then_replace)
    assert json.loads(root.read_bytes("export.json", 1 << 20)) == json.loads(new)
    assert replaced
    assert root.read_bytes("export.json", 10) == new[:11]  # the limit still bounds what is read
    root.write_bytes("empty.json", b"")
    assert root.read_bytes("empty.json", 10) == b""
    with pytest.raises(FileNotFoundError):
        root.read_bytes("absent.json", 10)
    root.write_bytes("folder/inner.json", b"{}")
    with pytest.raises(BundleError, match="folder"):
        root.read_bytes("folder", 10)


def test_a_lock_is_a_lease_renewed_while_held_and_taken_over_once_it_lapses(s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import json
    import time

    from nmig.errors import NmigError
    from nmig.schema import open_root
    from nmig.schema import store as store_module

    root = open_root(f"s3://{BUCKET}/leased", s3)
    monkeypatch.setattr(store_module, "LOCK_RENEW_S", 0.2)
    with root.lock(".nmig-export.lock", "busy"):
        first = json.loads(root.read_bytes(".nmig-export.lock", 4096))["renewed"]
        deadline = time.monotonic() + 10
        while json.loads(root.read_bytes(".nmig-export.lock", 4096))["renewed"] == first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert json.loads(root.read_bytes(".nmig-export.lock", 4096))["renewed"] > first  # renewed while held
    assert root.kind(".nmig-export.lock") is None

    # a holder on another machine that renewed it just now: busy; one that stopped renewing: taken over
    other = {"host": "another-pod", "pid": 1, "since": time.time() - 1000, "lease_s": store_module.LOCK_LEASE_S}
    root.write_bytes(".nmig-export.lock", json.dumps({**other, "renewed": time.time()}).encode())
    with pytest.raises(NmigError, match="busy .*taken over by itself"):
        with root.lock(".nmig-export.lock", "busy"):
            pass
    root.write_bytes(".nmig-export.lock", json.dumps({**other, "renewed": time.time() - store_module.LOCK_LEASE_S - 1}).encode())
    with root.lock(".nmig-export.lock", "busy"):
        assert json.loads(root.read_bytes(".nmig-export.lock", 4096))["host"] != "another-pod"


def test_file_url_is_a_local_folder(legacy: EmulatorInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "via url"
    url = folder.as_uri()  # file:///.../via%20url
    result = invoke("export", "--project", "acme/vision", "--out", url, "--api-token", legacy.api_token, "--quiet")
    assert result.exit_code == 0, result.output
    assert (folder / "export.json").is_file()
    assert invoke("inspect", url, "--check").exit_code == 0
    assert invoke("inspect", str(folder), "--check").exit_code == 0
