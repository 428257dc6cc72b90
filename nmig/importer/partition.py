"""`nmig import --shard I/N` and `nmig verify --shard I/N`: which runs of a bundle a shard takes.

Not the export's partition by legacy id: the import partitions by experiment. The head of a 3.x experiment is
the run with the latest legacy creation time, asserted again after every import (experiments.py); a shard
asserts the heads of the experiments its runs joined, among the runs it sees imported. Were the runs of one
experiment split across shards, each shard would assert its own latest and the last to finish would win.
So every run that joins an experiment goes to the shard its experiment name hashes to, and that one shard
imports the whole experiment and asserts its head; a run in no experiment goes by its legacy id.

Runs whose 3.x run ids meet (equal custom run ids: the first in bundle order keeps the id, the others are
refused, intake.RunIds) are kept together too, or two shards would each write their run into the same 3.x
run. The groups are decided from the whole bundle, which every shard reads, so the shards agree.

What belongs to no run's partition (the project-metadata run, models and model versions under
--models-as-runs) is taken by shard 1/N only.
"""

from __future__ import annotations

from collections.abc import Iterable

from nmig.importer import limits
from nmig.importer.plan import experiment_member, target_run_id
from nmig.schema import BundleError, EntityBundle
from nmig.sharding import Shard


def partition_keys(members: Iterable[tuple[str, str | None, str | None]]) -> dict[str, str]:
    """{legacy id: the key whose hash picks its shard} of (legacy id, 3.x experiment name or None, 3.x run id
    or None) tuples: runs that share an experiment name or a 3.x run id, directly or through others, get one
    key; the smallest experiment name among them, else the smallest legacy id (a plain run: its own id)."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    def join(a: str, b: str) -> None:
        parent.setdefault(a, a)
        parent.setdefault(b, b)
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[max(root_a, root_b)] = min(root_a, root_b)

    runs: list[tuple[str, str | None]] = []
    for sys_id, experiment, run_id in members:
        node = "r\0" + sys_id  # the run itself; its experiment and 3.x id are nodes of their own kinds
        parent.setdefault(node, node)
        if experiment:
            join(node, "e\0" + experiment)
        if run_id:
            join(node, "t\0" + run_id)
        runs.append((sys_id, experiment))
    names: dict[str, str] = {}
    ids: dict[str, str] = {}
    for sys_id, experiment in runs:
        root = find("r\0" + sys_id)
        if experiment and (root not in names or experiment < names[root]):
            names[root] = experiment
        if root not in ids or sys_id < ids[root]:
            ids[root] = sys_id
    return {sys_id: names.get(find("r\0" + sys_id), ids[find("r\0" + sys_id)]) for sys_id, _ in runs}


def member_of(entity: EntityBundle, experiments: str) -> tuple[str, str | None, str | None]:
    """(legacy id, 3.x experiment name, 3.x run id) of a run, as partition_keys takes them; a run whose bundle
    cannot be read is keyed by its id alone (the shard that takes it refuses it)."""
    try:
        member = experiment_member(entity, experiments)
        return entity.sys_id, member[0] if member else None, limits.fit_run_id(target_run_id(entity)[0])
    except BundleError:
        return entity.sys_id, None, None


def shard_runs(entities: list[EntityBundle], every_run: list[EntityBundle], experiments: str, shard: Shard | None) -> list[EntityBundle]:
    """The runs of `entities` that `shard` takes, decided over `every_run` of the bundle (all of them without
    a shard)."""
    if shard is None:
        return entities
    keys = partition_keys(member_of(entity, experiments) for entity in every_run)
    return [entity for entity in entities if shard.holds(keys.get(entity.sys_id, entity.sys_id))]
