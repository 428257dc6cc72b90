"""The one whole-entity validation that `nmig import` (before the first write of a run), `import --dry-run`
and `inspect --check` share, so that what the last two call clean imports.

It covers: the manifest's shape against its schema (manifest.py; already found when the entity loads, so
`plan_run` refuses such a run as incomplete), COMPLETE's checksums of every file, files that are not
regular or not listed, every file reference (a valid hash, a declared size in range, present), every stored
file decompressed as a stream, hashed as it goes and stopped as soon as it passes its declared size, and
every Parquet series file's schema and row counts. Every file is opened through safeio: no symlink is
followed anywhere under the bundle root and a FIFO or device is never opened.
"""

from __future__ import annotations

from nmig.schema.reader import EntityBundle


def validate_entity(entity: EntityBundle) -> list[str]:
    """Every problem of the entity, one line each, naming the entity, the path and why; [] when it imports."""
    return entity.verify(deep=True)


def refusal(problems: list[str], shown: int = 3) -> str:
    """The one line a refused entity gets in the import report and on the console."""
    more = f" (and {len(problems) - shown} more problem(s): nmig inspect --check lists them)" if len(problems) > shown else ""
    return "bundle damaged: " + "; ".join(problems[:shown]) + more
