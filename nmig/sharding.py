"""`--shard I/N`: the I-th of N stable partitions, shared by `nmig export`, `import` and `verify`.

N machines (or the pods of a Kubernetes Indexed Job) each take one shard and coordinate through nothing but
the bundle: which items a shard takes follows from the items alone (a hash of a key), never from a listing's
order or from the other shards. The export partitions entities by their legacy id; the import and verify
partition runs by experiment (nmig.importer.partition says why), with these same hashes.

Files a shard writes carry its `tag` (`shard-1-of-4`), so the shards of one bundle never write the same file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nmig.errors import NmigError

SHARD_TAG = re.compile(r"shard-(\d+)-of-(\d+)")


@dataclass(frozen=True)
class Shard:
    """The I-th (1-based) of N stable partitions."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """The shard in a file name: `shard-1-of-4`."""
        return f"shard-{self.index}-of-{self.count}"

    @property
    def first(self) -> bool:
        """Whether this is shard 1/N, the one that also takes what belongs to no partition (the import's
        project-metadata run, models as runs)."""
        return self.index == 1

    def holds(self, key: str) -> bool:
        # A hash of the key, not its position in a listing: the partition must not change when runs are added,
        # trashed or listed in another order, so N machines split a project with no overlap and no gap.
        # sha256, not hash(): Python salts str hashes per process, and the shards are separate processes.
        digest = hashlib.sha256(key.encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1


def parse_shard(text: str | None) -> Shard | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise NmigError(f"--shard {text!r}: expected I/N, e.g. 1/4 (the first of four shards)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 1 <= index <= count:
        raise NmigError(f"--shard {text!r}: I must be between 1 and N (shards are numbered 1/N ... N/N)")
    return Shard(index, count)


def tagged_name(name: str, shard: Shard | None) -> str:
    """A file name with the shard's tag before its suffix (`import-state.ws__p.json` ->
    `import-state.ws__p.shard-1-of-4.json`); `name` itself without a shard."""
    if shard is None:
        return name
    stem, dot, suffix = name.rpartition(".")
    return f"{stem}.{shard.tag}.{suffix}" if dot and stem else f"{name}.{shard.tag}"


def tagged_names(name: str, names: Iterable[str], trailer: str = "") -> list[str]:
    """Those of `names` that are `name` tagged with any shard (see `tagged_name`), followed by `trailer`
    (e.g. ".lock"), sorted; `name` itself not included."""
    stem, dot, suffix = name.rpartition(".")
    stem, suffix = (stem, "." + suffix) if dot and stem else (name, "")
    pattern = re.compile(re.escape(stem) + r"\." + SHARD_TAG.pattern + re.escape(suffix + trailer))
    return sorted(n for n in names if pattern.fullmatch(n))


def tagged(path: Path, shard: Shard | None) -> Path:
    """`path` with the shard's tag in its name (`tagged_name`); `path` itself without a shard."""
    return path if shard is None else path.with_name(tagged_name(path.name, shard))


def tagged_siblings(path: Path, trailer: str = "") -> list[Path]:
    """The files next to `path` that are `path` tagged with any shard, followed by `trailer`, sorted."""
    if not path.parent.is_dir():
        return []
    files = [p.name for p in path.parent.iterdir() if p.is_file()]
    return [path.with_name(n) for n in tagged_names(path.name, files, trailer)]
