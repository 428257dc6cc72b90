"""The unmodified `neptune` client reads every attribute type of the all-types fixture from the emulator."""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import neptune
import pytest
from neptune import management

ALL_TYPES = Path(__file__).resolve().parents[1] / "data" / "legacy_all_types.json"


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


@pytest.fixture(scope="module")
def token(all_types: Any) -> str:
    return all_types.token


def _read_only_run(number: int) -> Any:
    """A module fixture `run<number>`: run AT-<number> of the fixture, opened read-only by the client."""

    @pytest.fixture(scope="module", name=f"run{number}")
    def opened(token: str) -> Iterator[Any]:
        run = neptune.init_run(project="acme/all-types", with_id=f"AT-{number}", api_token=token, mode="read-only")
        yield run
        run.stop()

    return opened


run1 = _read_only_run(1)
run2 = _read_only_run(2)
run3 = _read_only_run(3)


@pytest.fixture(scope="module")
def project(token: str) -> Iterator[Any]:
    proj = neptune.init_project(project="acme/all-types", api_token=token, mode="read-only")
    yield proj
    proj.stop()


def test_project_list(token: str) -> None:
    assert sorted(management.get_project_list(api_token=token)) == ["acme/all-types", "acme/empty-project"]


def test_project_level_attributes(project: Any) -> None:
    structure = project.get_structure()
    assert set(structure["about"]) == {"purpose", "kickoff", "budget", "labels"}
    assert project["about/purpose"].fetch() == "migration rehearsal"
    assert project["about/kickoff"].fetch() == _utc("2023-02-01T08:30:00Z")
    assert project["about/labels"].fetch() == {"legacy", "2.x"}
    assert project["about/budget"].fetch() == 1250.5
    assert project["sys/id"].fetch() == "AT"


def test_runs_table_trashed_filter_and_columns(project: Any) -> None:
    live = project.fetch_runs_table(columns=["sys/custom_run_id", "params/lr"]).to_pandas()
    assert sorted(live["sys/id"]) == ["AT-1", "AT-2", "AT-3"]
    # The default sort is sys/creation_time, newest first; sys/id and the sort column always come back.
    assert list(live["sys/id"]) == ["AT-3", "AT-2", "AT-1"]
    assert set(live.columns) == {"sys/id", "sys/creation_time", "sys/custom_run_id", "params/lr"}
    custom = dict(zip(live["sys/id"], live["sys/custom_run_id"], strict=True))
    assert custom["AT-1"] == "custom-atoms-001" and custom["AT-3"] == "custom-files-003"
    assert not isinstance(custom["AT-2"], str)  # no sys/custom_run_id on AT-2: an empty cell

    trashed = project.fetch_runs_table(trashed=True, columns=["sys/trashed"]).to_pandas()
    assert sorted(trashed["sys/id"]) == ["AT-4", "AT-5"]
    everything = project.fetch_runs_table(trashed=None, columns=[]).to_pandas()
    assert sorted(everything["sys/id"]) == ["AT-1", "AT-2", "AT-3", "AT-4", "AT-5"]


def test_runs_table_rows_carry_raw_properties(project: Any) -> None:
    rows = {row["sys/id"].get(): row for row in project.fetch_runs_table(id=["AT-1"])}
    assert list(rows) == ["AT-1"]
    row = rows["AT-1"]
    assert row["source_code/git"].get() == "0123456789abcdef0123456789abcdef01234567"
    assert row["notebook"].get() == "explore.ipynb"
    assert row["sys/state"].get() == "Active"
    assert row["datasets/train"].get().startswith("4f3a0c7b")
    assert row["sys/tags"].get() == {"baseline", "résumé", "with space"}


def test_every_atom_type(run1: Any) -> None:
    assert run1["sys/id"].fetch() == "AT-1"
    assert run1["sys/name"].fetch() == "atoms ✓"
    assert run1["sys/custom_run_id"].fetch() == "custom-atoms-001"
    assert run1["params/lr"].fetch() == 0.001
    assert run1["params/epochs"].fetch() == 10
    assert run1["params/big_int"].fetch() == 1099511627776
    assert run1["params/optimizer"].fetch() == "adam"
    assert run1["params/augment"].fetch() is True
    assert run1["params/learning rate"].fetch() == 0.25
    assert math.isnan(run1["params/nan"].fetch())
    assert run1["params/pos_inf"].fetch() == math.inf
    assert run1["params/neg_inf"].fetch() == -math.inf
    assert run1["params/started"].fetch() == _utc("2023-03-01T10:00:01.500Z")
    assert run1["params/empty_text"].fetch() == ""
    assert run1["params/layers"].fetch() == {"conv1", "fc"}
    assert run1["params/no_labels"].fetch() == set()
    assert run1["métriques/précision finale"].fetch() == 0.875
    assert run1["sys/creation_time"].fetch() == _utc("2023-03-01T10:00:00.123Z")
    assert run1["sys/trashed"].fetch() is False
    # Defaults a real 2.x run always has
    assert run1["sys/description"].fetch() == ""
    assert run1["sys/group_tags"].fetch() == set()
    assert run1["sys/failed"].fetch() is False


def test_namespace_fetch_and_raw_properties(run1: Any) -> None:
    params = run1["params"].fetch()
    assert params["optimizer"] == "adam" and params["epochs"] == 10
    everything = run1.fetch()  # the root namespace: every atom the client maps to a value
    assert everything["sys"]["state"] == "running" and everything["notebook"] is None
    assert math.isnan(everything["params"]["nan"]) and everything["params"]["pos_inf"] == math.inf
    backend = run1._backend
    attributes = (
        backend.leaderboard_client.api.getExperimentAttributes(experimentId=run1._id).response().result
    )
    by_name = {a.name: a for a in attributes.attributes}
    # Inline (non-$ref) property objects come back from bravado as plain dicts.
    git = by_name["source_code/git"].gitRefProperties
    assert git["commit"]["commitId"] == "0123456789abcdef0123456789abcdef01234567"
    assert git["commit"]["authorName"] == "Ana Ñúñez"
    assert git["currentBranch"] == "main" and git["repositoryDirty"] is True
    assert git["remotes"] == ["git@example.com:acme/vision.git"]
    assert by_name["sys/state"].experimentStateProperties["value"] == "running"
    notebook = by_name["notebook"].notebookRefProperties
    assert (notebook["notebookId"], notebook["checkpointName"]) == (
        "7d7e2c9a-7a64-4bd1-9a77-5c1f3b1f0c11",
        "before cleanup",
    )


def test_artifact(run1: Any) -> None:
    assert run1["datasets/train"].fetch_hash().startswith("4f3a0c7b")
    files = run1["datasets/train"].fetch_files_list()
    assert [f.file_path for f in files] == ["train/images.tar", "train/labels with space.csv"]
    assert files[0].size == 123456789 and files[0].file_hash == "aa11"
    assert files[0].metadata["location"] == "s3://acme-data/train/images.tar"


def test_float_and_string_series(run2: Any) -> None:
    loss = run2["train/loss"].fetch_values()
    assert list(loss["step"]) == [0, 1, 2, 3, 4]
    values = list(loss["value"])
    assert values[0] == 2.5 and math.isnan(values[1]) and values[2:4] == [math.inf, -math.inf]
    assert int(loss["timestamp"].iloc[0].timestamp() * 1000) == 1677664800000
    assert list(run2["train/fractional"].fetch_values()["step"]) == [0.5, 1.25, 2.75]
    assert list(run2["train/huge_steps"].fetch_values()["step"]) == [1e15, 9007199254740992.0, 1.5e18]
    assert len(run2["train/empty"].fetch_values()) == 0
    assert run2["train/loss"].fetch_last() == 0.125
    logs = run2["logs/stdout"].fetch_values()
    assert list(logs["value"]) == ["epoch 1 ✓", "", "  leading spaces", 'line with "quotes" and \\ backslash']
    assert len(run2["logs/empty"].fetch_values()) == 0


def test_file_series_keep_steps_names_and_contents(run2: Any, tmp_path: Path) -> None:
    run2["images/samples"].download(str(tmp_path / "images"))
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["0.png", "1.png"]
    assert (tmp_path / "images" / "0.png").read_bytes().startswith(b"\x89PNG")
    api = run2._backend.leaderboard_client.api
    # As both published snapshots have it: the series' count only, and its points in its channel.
    page = api.getImageSeriesValues(experimentId=run2._id, attribute="images/samples", limit=10, offset=0)
    assert page.response().result.totalItemCount == 2
    attribute = api.getExperimentAttributes(experimentId=run2._id).response().result
    (samples,) = [a for a in attribute.attributes if a.name == "images/samples"]
    channel = samples.imageSeriesProperties.channelId
    values = api.getChannelValues(channelId=channel, limit=10, offset=0).response().result
    assert values.channelId == channel and values.totalItemCount == 2
    assert [(v.x, v.timestampMillis, v.y.imageValue.name, v.y.imageValue.description) for v in values.values] == [
        (0.0, 1677664800000, "red square", "first sample"),
        (2.5, 1677664805000, "blue strip ü", ""),
    ]
    run2["images/none"].download(str(tmp_path / "none"))
    assert list((tmp_path / "none").iterdir()) == []


def test_files_and_file_sets(run3: Any, tmp_path: Path) -> None:
    run3["files/picture"].download(str(tmp_path / "picture.png"))
    assert (tmp_path / "picture.png").read_bytes().startswith(b"\x89PNG")
    run3["files/notes"].download(str(tmp_path / "notes.txt"))
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "plain notes ✓\n"
    run3["files/empty"].download(str(tmp_path / "empty.bin"))
    assert (tmp_path / "empty.bin").read_bytes() == b""
    run3["files/my report ü"].download(str(tmp_path / "report.md"))
    assert (tmp_path / "report.md").read_text() == "# Report\n"
    assert run3["files/picture"].fetch_extension() == "png"

    run3["source_code/files"].download(str(tmp_path / "files.zip"))
    with zipfile.ZipFile(tmp_path / "files.zip") as archive:
        contents = {info.filename: archive.read(info) for info in archive.infolist()}
    assert contents == {
        "src/train.py": b"print('train')\n",
        "dir with space/ünï.txt": b"unicode name\n",
        "../../escape.txt": b"a hostile entry name, served as is\n",
        "empty.bin": b"",
    }
    listing = {e.name: e for e in run3["source_code/files"].list_fileset_files()}
    assert listing["src"].file_type == "directory" and listing["empty.bin"].size == 0
    assert [e.name for e in run3["source_code/files"].list_fileset_files("src")] == ["train.py"]


def test_models_and_versions(token: str, project: Any) -> None:
    models = project.fetch_models_table().to_pandas()
    assert list(models["sys/id"]) == ["AT-CLS"]
    model = neptune.init_model(project="acme/all-types", with_id="AT-CLS", api_token=token, mode="read-only")
    try:
        assert model["info/framework"].fetch() == "pytorch"
        versions = model.fetch_model_versions_table().to_pandas()
        assert sorted(versions["sys/id"]) == ["AT-CLS-1", "AT-CLS-2"]
    finally:
        model.stop()
    version = neptune.init_model_version(
        project="acme/all-types", with_id="AT-CLS-1", api_token=token, mode="read-only"
    )
    try:
        assert version["sys/model_id"].fetch() == "AT-CLS"
        assert version["sys/stage"].fetch() == "production"
        assert version["validation/acc"].fetch() == 0.91
        assert version["model/binary"].fetch_extension() == "pt"
    finally:
        version.stop()


def test_missing_run_is_reported_by_the_client(token: str) -> None:
    from neptune.exceptions import MetadataContainerNotFound

    with pytest.raises(MetadataContainerNotFound):
        neptune.init_run(project="acme/all-types", with_id="AT-99", api_token=token, mode="read-only")


def test_empty_project_tables(token: str) -> None:
    empty = neptune.init_project(project="acme/empty-project", api_token=token, mode="read-only")
    try:
        assert len(empty.fetch_runs_table().to_pandas()) == 0
        assert len(empty.fetch_models_table().to_pandas()) == 0
        assert empty["sys/id"].fetch() == "EMP"
    finally:
        empty.stop()


def test_project_lookup_without_workspace_and_missing_project(token: str) -> None:
    from neptune.exceptions import ProjectNotFoundWithSuggestions

    project = neptune.init_project(project="empty-project", api_token=token, mode="read-only")
    try:
        assert project["sys/name"].fetch() == "empty-project"
    finally:
        project.stop()
    with pytest.raises(ProjectNotFoundWithSuggestions) as missing:
        neptune.init_project(project="acme/nope", api_token=token, mode="read-only")
    assert "acme/all-types" in str(missing.value)  # the client lists the projects the server offers
