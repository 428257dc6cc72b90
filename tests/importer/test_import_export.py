"""A bundle made by `nmig export` from the legacy emulator (every legacy type), imported into the 3.x
emulator with `nmig import`, read back with neptune-query."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
from importer_helpers import items, report

from nmig.emulators.http import EmulatorInfo

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"
PROJECT = "demo/all-types"


@pytest.fixture(scope="module")
def imported(neptune3: EmulatorInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from click.testing import CliRunner

    from nmig.cli import main
    from nmig.emulators.legacy import serve_legacy

    bundle = tmp_path_factory.mktemp("export") / "bundle"
    with serve_legacy(str(FIXTURE)) as legacy:
        result = CliRunner().invoke(
            main, ["export", "--project", "acme/all-types", "--out", str(bundle), "--api-token", legacy.api_token, "--quiet"]
        )
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["import", str(bundle), "--project", "demo", "--api-token", neptune3.api_token, "--quiet"])
    assert result.exit_code == 0, result.output
    return bundle


def table(nq: Any, run: str, attributes: list[str]) -> dict[str, Any]:
    frame = nq.fetch_runs_table(project=PROJECT, runs=[run], attributes=attributes)
    return frame.iloc[0].to_dict()


def test_runs_ids_and_models(imported: Path, nq: Any) -> None:
    # custom_run_id when there is one, else the legacy sys/id; trashed runs are not exported by default
    # (and the project-metadata run: the legacy project's description and attributes)
    assert sorted(nq.list_runs(project=PROJECT)) == ["AT-2", "custom-atoms-001", "custom-files-003", "nmig-legacy-project"]
    doc = report(imported)
    assert doc["project"] == PROJECT  # the legacy project's name in the given workspace
    assert sorted(doc["runs"]["imported"]) == ["AT-1", "AT-2", "AT-3"]
    assert sorted(doc["runs"]["not_imported"]) == ["AT-CLS", "AT-CLS-1", "AT-CLS-2"]
    assert {i["case"] for i in items(doc, run="AT-CLS")} == {"not_imported"}


def test_atoms_become_configs_and_sys_is_remapped(imported: Path, nq: Any) -> None:
    row = table(
        nq,
        "custom-atoms-001",
        ["params/lr", "params/epochs", "params/big_int", "params/optimizer", "params/augment", "params/learning rate",
         "params/started", "params/empty_text", "params/layers", "métriques/précision finale", "sys/name",
         "sys/tags", "legacy_sys/owner", "legacy_sys/custom_run_id", "legacy_sys/creation_time", "sys/creation_time"],
    )
    assert row["params/lr"] == 0.001 and row["params/epochs"] == 10 and row["params/big_int"] == 1099511627776
    assert row["params/optimizer"] == "adam" and row["params/augment"] is True and row["params/learning rate"] == 0.25
    assert row["params/started"] == dt.datetime(2023, 3, 1, 10, 0, 1, 500000, tzinfo=dt.timezone.utc)
    assert row["params/empty_text"] == "" and set(row["params/layers"]) == {"conv1", "fc"}
    assert row["métriques/précision finale"] == 0.875
    assert row["sys/name"] == "atoms ✓"  # the experiment name given at creation
    assert set(row["sys/tags"]) == {"baseline", "résumé", "with space"}
    assert row["legacy_sys/owner"] == "ana" and row["legacy_sys/custom_run_id"] == "custom-atoms-001"
    created = dt.datetime(2023, 3, 1, 10, 0, 0, 123000, tzinfo=dt.timezone.utc)
    assert row["legacy_sys/creation_time"] == created and row["sys/creation_time"] == created
    attributes = set(nq.list_attributes(project=PROJECT, runs=["custom-atoms-001"]))
    assert "notebook" not in attributes and not any(a.startswith(("sys/state", "legacy_sys/state")) for a in attributes)


def test_git_ref_becomes_native_source_fields(imported: Path, nq: Any) -> None:
    row = table(
        nq,
        "custom-atoms-001",
        ["source_code/commit/commit_id", "source_code/commit/message", "source_code/commit/author_name",
         "source_code/commit/author_email", "source_code/commit/commit_date", "source_code/branch",
         "source_code/dirty", "source_code/remote/origin"],
    )
    assert row["source_code/commit/commit_id"] == "0123456789abcdef0123456789abcdef01234567"
    assert row["source_code/commit/message"].startswith("Fix the loader")
    assert row["source_code/commit/author_name"] == "Ana Ñúñez" and row["source_code/commit/author_email"] == "ana@example.com"
    assert row["source_code/commit/commit_date"] == dt.datetime(2023, 2, 28, 17, 45, 12, tzinfo=dt.timezone.utc)
    assert row["source_code/branch"] == "main" and row["source_code/dirty"] is True
    assert row["source_code/remote/origin"] == "git@example.com:acme/vision.git"


def test_importing_machine_leaks_nothing(imported: Path, nq: Any) -> None:
    # nmig's own checkout is a git repository with a console: neither may reach a migrated run.
    for run in ("AT-2", "custom-files-003"):
        attributes = nq.list_attributes(project=PROJECT, runs=[run])
        assert not [a for a in attributes if a.startswith("source_code/") and not a.startswith("source_code/files/")]
        assert not [a for a in attributes if a.startswith("runtime/")]


def test_artifact_as_configs_and_report_only_types(imported: Path, nq: Any) -> None:
    row = table(nq, "custom-atoms-001", ["datasets/train/hash", "datasets/train/files/count",
                                         "datasets/train/files/1/file_path", "datasets/train/files/0/size",
                                         "datasets/train/files/0/metadata/location"])
    assert row["datasets/train/hash"].startswith("4f3a0c7b")
    assert row["datasets/train/files/count"] == 2
    assert row["datasets/train/files/1/file_path"] == "train/labels with space.csv"
    assert row["datasets/train/files/0/size"] == 123456789
    assert row["datasets/train/files/0/metadata/location"] == "s3://acme-data/train/images.tar"
    doc = report(imported)
    notebook = items(doc, "not_written", "AT-1")
    assert [i["path"] for i in notebook] == ["notebook"] and "explore.ipynb" in notebook[0]["detail"]
    assert {i["path"] for i in items(doc, "not_copied")} == {"sys/state"}


def test_series_keep_steps_values_and_timestamps(imported: Path, nq: Any) -> None:
    from nmig.schema import read_float_series, read_string_series

    expected = read_float_series(imported, run_id="AT-2")
    for path in ("train/loss", "train/fractional"):
        want = expected[expected["path"] == path]
        got = nq.fetch_metrics(project=PROJECT, runs=["AT-2"], attributes=[path], include_time="absolute")
        got = got.reset_index()
        assert got["step"].tolist() == want["step"].tolist()
        values = got[(path, "value")].tolist()
        assert all((math.isnan(a) and math.isnan(b)) or a == b for a, b in zip(values, want["value"].tolist(), strict=True))
        assert [t.value // 1_000_000 for t in got[(path, "absolute_time")]] == [t.value // 1_000_000 for t in want["timestamp"]]
    logs = read_string_series(imported, run_id="AT-2")
    got = nq.fetch_series(project=PROJECT, runs=["AT-2"], attributes=["logs/stdout"]).reset_index()
    assert got["step"].tolist() == logs["step"].tolist()
    assert got["logs/stdout"].tolist() == logs["value"].tolist()
    doc = report(imported)
    assert {i["path"] for i in items(doc, "empty_series", "AT-2")} == {"train/empty", "logs/empty", "images/none"}
    out_of_range = items(doc, "step_out_of_range", "AT-2")
    assert [i["path"] for i in out_of_range] == ["train/huge_steps"]


def test_files_filesets_and_file_series(imported: Path, nq: Any, tmp_path: Path) -> None:
    from nmig.schema import Bundle

    entity = Bundle(imported).entity("run", "AT-3")
    frame = nq.fetch_runs_table(project=PROJECT, runs=["custom-files-003"],
                                attributes=["files/notes", "files/empty", "source_code/files/src/train.py",
                                            "source_code/files/dir with space/ünï.txt"])
    nq.download_files(files=frame, destination=tmp_path)
    downloaded = {p.name: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    notes = entity.read_file(entity.attribute("files/notes")["file"]["hash"])
    assert notes in downloaded.values()
    entries = {e["entry"]: e["hash"] for e in entity.attribute("source_code/files")["entries"]}
    assert entity.read_file(entries["src/train.py"]) in downloaded.values()
    assert entity.read_file(entries["dir with space/ünï.txt"]) in downloaded.values()
    doc = report(imported)
    unsafe = items(doc, "unsafe_entry", "AT-3")
    assert len(unsafe) == 1 and "../../escape.txt" in unsafe[0]["detail"]
    images = nq.fetch_series(project=PROJECT, runs=["AT-2"], attributes=["images/samples"]).reset_index()
    assert images["step"].tolist() == [0.0, 2.5]
    # the legacy point names live on in the file names 3.x stores (there is no name field)
    stored = [f.path.rsplit("/", 1)[-1] for f in images["images/samples"]]
    assert stored[0].startswith("red_square") and stored[1].startswith("blue_strip"), stored
    assert all(f.mime_type == "image/png" for f in images["images/samples"])
    assert items(doc, "description_not_written", "AT-2")
