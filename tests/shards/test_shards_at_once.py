"""Many machines, no coordinator but the bundle (issue 13, item 3): four `nmig export --shard i/4` processes at
once into one bundle location (a folder, or a bucket with each process its own XDG_STATE_HOME as on its own machine), then four `nmig import --shard i/4` at once into one 3.x project; an unsharded
verify is green, the target holds every run exactly once and each experiment is headed by its latest run, and
imports without --shard or with another N afterwards import nothing again."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from nmig.cli import main
from nmig.emulators.http import EmulatorInfo

sys.path.insert(0, str(Path(__file__).parents[1]))
from s3_server import BUCKET, s3_env, serve_s3  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SOURCE, TARGET = "acme/vision", "demo/vision"
RUNS = 12
SHARDS = 4
# runs 0-7 form four experiments of two runs (across export shards, which go by id); runs 8-11 keep the legacy
# default name, so they are plain runs (imported by their id)
NAMES = ("sweep-a", "sweep-b", "sweep-c", "sweep-d")


@dataclass
class BundleLocation:
    """Where the shards meet: the argument every command gets, the environment that reaches it (a pod's
    AWS_* variables for a bucket), and how the test reads it afterwards."""

    argument: str
    env: dict[str, str] = field(default_factory=dict)
    storage_options: dict[str, Any] | None = None

    def read_json(self, name: str) -> Any:
        """The file `name` at the bundle's top, None when absent."""
        from nmig.schema import open_root

        root = open_root(self.argument, self.storage_options)
        return json.loads(root.read_bytes(name, 1 << 24)) if root.kind(name) == "file" else None


@contextlib.contextmanager
def _local(tmp_path: Path) -> Iterator[BundleLocation]:
    yield BundleLocation(str(tmp_path / "bundle"))


@contextlib.contextmanager
def _s3(tmp_path: Path) -> Iterator[BundleLocation]:
    # one bucket, nothing shared on disk: every process has its own XDG_STATE_HOME, so whatever one of them
    # kept on its machine the others would not see
    with serve_s3() as options:
        yield BundleLocation(f"s3://{BUCKET}/vision", s3_env(options), options)


LOCATIONS = {"local": _local, "s3": _s3}


@pytest.fixture(scope="module")
def legacy() -> Iterator[EmulatorInfo]:
    from nmig.emulators.legacy import serve_legacy
    from nmig.emulators.sample import sample_fixture

    fixture = sample_fixture(runs=RUNS, points=40)
    for index, run in enumerate(fixture["projects"][0]["runs"][:RUNS]):
        run["attributes"]["sys/name"]["value"] = NAMES[index % len(NAMES)] if index < 2 * len(NAMES) else "Untitled"
    with serve_legacy(fixture) as info:
        yield info


def _all_at_once(commands: list[list[str]], env: dict[str, str], cwd: Path) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-m", "nmig", *c], env={**env, "XDG_STATE_HOME": str(cwd / f"machine-{n}")}, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for n, c in enumerate(commands)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in processes]
    for command, process, output in zip(commands, processes, outputs, strict=True):
        assert process.returncode == 0, f"{' '.join(command[:3])}: {output[-3000:]}"


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env={"NEPTUNE_API_TOKEN": "", **(env or {})})


def _target_runs(target: EmulatorInfo) -> dict[str, tuple[str, bool]]:
    """{3.x run id: (experiment name, is head)} of every run the target project lists."""
    import neptune_query
    from neptune_query import runs as nq

    neptune_query.set_api_token(target.api_token)
    listed = list(nq.list_runs(project=TARGET))
    assert len(listed) == len(set(listed))
    table = nq.fetch_runs_table(project=TARGET, runs=listed, attributes=["sys/experiment/name", "sys/experiment/is_head"])
    found = {}
    for run_id, row in table.iterrows():
        name = row.get("sys/experiment/name")
        found[str(run_id)] = (name if isinstance(name, str) else "", bool(row.get("sys/experiment/is_head") is True))
    assert sorted(found) == sorted(listed)
    return found


@pytest.mark.parametrize("where", sorted(LOCATIONS))
def test_four_shards_at_once_export_then_import(where: str, legacy: EmulatorInfo, tmp_path: Path) -> None:

    with LOCATIONS[where](tmp_path) as location:
        _four_shards_at_once(location, legacy, tmp_path)


def _four_shards_at_once(location: BundleLocation, legacy: EmulatorInfo, tmp_path: Path) -> None:
    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.schema import Bundle

    shards = [f"{i}/{SHARDS}" for i in range(1, SHARDS + 1)]
    env = {**os.environ, **legacy.env, **location.env, "NEPTUNE_API_TOKEN": legacy.api_token}
    _all_at_once(
        [["export", "--project", SOURCE, "--out", location.argument, "--shard", s, "--max-workers", "2", "--quiet"]
         for s in shards],
        env, tmp_path,
    )
    bundle = Bundle(location.argument, location.storage_options)
    assert len(bundle.sys_ids("run")) == RUNS
    assert all(e.complete for e in bundle.entities("run"))
    assert list(bundle.info["shards"]) == shards and bundle.info["finished_at"] is not None
    assert bundle.info["selection"]["shard"] == ",".join(shards)

    with serve_neptune3(data_dir=tmp_path / "neptune3") as target:
        env = {**os.environ, **target.env, **location.env, "NEPTUNE_API_TOKEN": target.api_token}
        _all_at_once(
            [["import", location.argument, "--project", TARGET, "--shard", s, "--max-workers", "2", "--quiet"]
             for s in shards],
            env, tmp_path,
        )
        verified = _cli("verify", location.argument, "--project", TARGET, "--api-token", target.api_token, "--quiet", env=location.env)
        assert verified.exit_code == 0, verified.output
        assert "All runs match." in verified.output and verified.output.count(" OK") == RUNS + 1  # + project metadata
        found = _target_runs(target)

        # every legacy run is imported by exactly one shard, into its own 3.x run
        imported: dict[str, list[str]] = {}
        importer_of: dict[str, int] = {}  # legacy id -> the shard whose state has it
        busy = 0
        for s in range(1, SHARDS + 1):
            # every shard reports; a shard that the hashes gave no run writes no state
            assert location.read_json(f"import-report.demo__vision.shard-{s}-of-{SHARDS}.json") is not None
            state_doc = location.read_json(f"import-state.demo__vision.shard-{s}-of-{SHARDS}.json")
            if state_doc is None:
                continue
            busy += 1
            for sys_id, entry in state_doc["runs"].items():
                assert entry["status"] == "imported"
                imported.setdefault(sys_id, []).append(entry["target_run_id"])
                importer_of[sys_id] = s
        assert busy >= 2, "the shards did not share the work"
        assert location.read_json("import-state.demo__vision.json") is None
        assert sorted(imported) == sorted(bundle.sys_ids("run")) and all(len(t) == 1 for t in imported.values())
        assert sorted(found) == sorted([t[0] for t in imported.values()] + ["nmig-legacy-project"])

        # each experiment is imported by one shard, which decides its head: the latest-created run
        created: dict[str, list[tuple[dt.datetime, str]]] = {}
        shards_of: dict[str, set[int]] = {}
        for entity in bundle.entities("run"):
            name = entity.attribute("sys/name")["value"]
            if name == "Untitled":
                assert found[imported[entity.sys_id][0]] == ("", False)
                continue
            when = dt.datetime.fromisoformat(entity.attribute("sys/creation_time")["value"].replace("Z", "+00:00"))
            created.setdefault(name, []).append((when, imported[entity.sys_id][0]))
            shards_of.setdefault(name, set()).add(importer_of[entity.sys_id])
        assert sorted(created) == sorted(NAMES)
        assert all(len(where) == 1 for where in shards_of.values()), shards_of
        for name, members in created.items():
            head = max(members)[1]
            assert {run_id: found[run_id] for _, run_id in members} == {
                run_id: (name, run_id == head) for _, run_id in members
            }

        # afterwards, without --shard or with another N: every run is already imported, none sent again
        for again in ([], ["--shard", "1/2"], ["--shard", "2/2"]):
            result = _cli("import", location.argument, "--project", TARGET, "--api-token", target.api_token,
                          "--quiet", *again, env=location.env)
            assert result.exit_code == 0, result.output
            assert " 0 run(s) imported" in result.output and "0 failed" in result.output, result.output
        assert _target_runs(target) == found
    verified_report = location.read_json("import-report.demo__vision.json")
    assert sorted(verified_report["runs"]["already_imported"]) == sorted(bundle.sys_ids("run"))
