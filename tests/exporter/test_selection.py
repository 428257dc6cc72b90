"""Pure selection logic of the exporter: --shard (nmig.sharding), --runs, resume and --update decisions."""

from __future__ import annotations

import pytest

from nmig.errors import NmigError
from nmig.exporter import validate_project
from nmig.exporter.selection import Existing, RunMatcher, needs_export
from nmig.sharding import Shard, parse_shard


def test_shards_partition_ids_without_overlap_or_gap() -> None:
    ids = [f"VIS-{n}" for n in range(1, 500)]
    shards = [Shard(i, 4) for i in range(1, 5)]
    owners = [[s for s in shards if s.holds(sys_id)] for sys_id in ids]
    assert all(len(o) == 1 for o in owners)
    sizes = [sum(1 for o in owners if o[0] is s) for s in shards]
    assert min(sizes) > 80  # roughly even: a hash, not a range
    # stable across processes: a content hash, not Python's per-process salted hash()
    assert [s.index for s in shards if s.holds("VIS-7")] == [
        1 + int.from_bytes(__import__("hashlib").sha256(b"VIS-7").digest()[:8], "big") % 4
    ]
    assert Shard(1, 1).holds("anything")


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "1", "1/2/3", ""])
def test_bad_shards_are_refused(text: str) -> None:
    with pytest.raises(NmigError, match="--shard"):
        parse_shard(text)


def test_parse_shard() -> None:
    assert parse_shard(" 2 / 5 ") == Shard(2, 5)
    assert parse_shard(None) is None
    assert str(Shard(2, 5)) == "2/5"


def test_run_matcher_exact_ids_custom_ids_and_full_regexes() -> None:
    matcher = RunMatcher(["VIS-1", "exp-[a-c]", "VIS-2[0-9]"])
    assert matcher.matches("VIS-1", None)
    assert not matcher.matches("VIS-12", None)  # regexes match in full, not as a prefix
    assert matcher.matches("VIS-23", None)
    assert matcher.matches("VIS-99", "exp-b")
    assert not matcher.matches("VIS-99", "exp-d")
    assert RunMatcher([]).matches("VIS-5", None)
    # an exact id with regex characters still matches itself
    assert RunMatcher(["run (1)+"]).matches("VIS-3", "run (1)+")


def test_run_matcher_refuses_invalid_regex() -> None:
    with pytest.raises(NmigError, match="regular expression"):
        RunMatcher(["VIS-[1"])


def test_needs_export_resume_and_update() -> None:
    old = "2024-05-01T12:00:00.000Z"
    new = "2024-05-02T08:00:00.500Z"
    assert needs_export(None, old, update=False) == "new"
    assert needs_export(Existing(False, old), old, update=False) == "incomplete before"
    assert needs_export(Existing(True, old), new, update=False) is None
    assert needs_export(Existing(True, old), new, update=True) == "modified since"
    assert needs_export(Existing(True, new), new, update=True) is None
    assert needs_export(Existing(True, None), new, update=True) == "modified since"


@pytest.mark.parametrize("name", [None, "", "justname", "a/b/c", "a /b"])
def test_validate_project_refuses_bad_names(name: str | None) -> None:
    with pytest.raises(NmigError, match="project"):
        validate_project(name)


def test_validate_project_accepts_workspace_slash_name() -> None:
    assert validate_project(" acme/vision ") == "acme/vision"
