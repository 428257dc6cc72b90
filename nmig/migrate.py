"""`nmig migrate`: export and import pipelined on one machine that holds both tokens.

The export runs in a background thread and commits each run into the bundle folder as usual; the import side
watches the folder and hands every run whose bundle is complete to `nmig import`'s own `run_import`, in
batches of whatever has completed since the last batch, so importing overlaps exporting. Nothing new happens
to the data: the bundle on disk, the import state file and the import report are exactly those of
`nmig export --out DIR` followed by `nmig import DIR`, so a killed or failed migrate is resumed by running it
again (or by running the two commands by hand), and `nmig verify DIR` checks the result.

The exporter and the importer never import each other; this module is the only place that uses both.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.errors import NmigError, PartialFailure
from nmig.schema.format import COMPLETE, EXPORT_INFO, KIND_FOLDERS

LEGACY_TOKEN_ENV = "NEPTUNE_LEGACY_API_TOKEN"
POLL_SECONDS = 0.5


@dataclass
class MigrateOptions:
    source_project: str | None
    target_project: str | None
    out: Path
    legacy_token: str | None
    api_token: str | None
    runs: tuple[str, ...] = ()
    query: str | None = None
    include_trashed: bool = False
    max_workers: int = 4
    quiet: bool = False


@dataclass
class MigrateResult:
    exported: int = 0
    already_exported: int = 0
    export_failed: list[tuple[str, str]] = field(default_factory=list)  # (sys_id, reason)
    imported: list[str] = field(default_factory=list)
    already_imported: list[str] = field(default_factory=list)
    import_failed: list[str] = field(default_factory=list)
    report_path: Path | None = None

    def summary(self) -> str:
        return (
            f"exported {self.exported} entities ({self.already_exported} already complete, {len(self.export_failed)} incomplete); "
            f"imported {len(self.imported)} ({len(self.already_imported)} already imported, {len(self.import_failed)} failed)"
        )


def _complete_runs(out: Path) -> list[str]:
    """Runs whose folder carries the COMPLETE marker (the writer renames a finished folder into place, so a
    run either is not there yet or is there in full)."""
    folder = out / KIND_FOLDERS["run"]
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in os.scandir(folder) if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / COMPLETE).is_file())


class _ReportMerger:
    """`run_import` writes its report for the runs of its own call; a migrate makes several calls, so their
    reports are merged into one (the same format, at the same place), which is what `nmig verify` reads."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] | None = None
        self._items: set[str] = set()

    def add(self, path: Path) -> None:
        try:
            part = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if self.doc is None:
            self.doc = {**part, "runs": {k: [] for k in part.get("runs", {})}, "targets": {}, "items": []}
        doc = self.doc
        for key, ids in (part.get("runs") or {}).items():
            known = doc["runs"].setdefault(key, [])
            known.extend(i for i in ids if i not in known)
        doc["targets"].update(part.get("targets") or {})
        for item in part.get("items") or []:
            key = json.dumps(item, sort_keys=True)
            if key not in self._items:
                self._items.add(key)
                doc["items"].append(item)
        doc["finished_at"] = part.get("finished_at")

    def write(self, path: Path) -> None:
        from nmig.importer.state import write_json_atomically

        if self.doc is not None:
            # A run that failed in one batch and was imported in a later one is imported.
            runs = self.doc["runs"]
            done = set(runs.get("imported", [])) | set(runs.get("already_imported", []))
            runs["failed"] = [i for i in runs.get("failed", []) if i not in done]
            write_json_atomically(path, self.doc)


def _check_tokens(options: MigrateOptions) -> tuple[str, str]:
    legacy = (options.legacy_token or os.environ.get(LEGACY_TOKEN_ENV) or "").strip()
    if not legacy:
        raise NmigError(f"no 2.x API token: pass --legacy-token or set {LEGACY_TOKEN_ENV}")
    target = (options.api_token or "").strip()
    if not target:
        raise NmigError("no 3.x API token: pass --api-token or set NEPTUNE_API_TOKEN")
    return legacy, target


def _preflight_target(api_token: str) -> None:
    """Fail before exporting anything when the 3.x token is wrong or the service unreachable."""
    from nmig.importer.runner import _check_token
    from nmig.loopback import prepare_client_env

    _check_token(api_token)
    prepare_client_env(api_token)
    from neptune_scale.projects import list_projects

    try:
        list_projects(api_token=api_token)
    except Exception as exc:  # neptune-scale, neptune-api and httpx each raise their own kinds here
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise NmigError(f"the 3.x service refused the API token or could not be reached: {text}") from None


def migrate(options: MigrateOptions) -> MigrateResult:
    """Everything `nmig migrate` does. NmigError for bad input; PartialFailure when some runs were not
    exported or not imported (re-run the same command to retry them)."""
    from nmig.exporter import ExportOptions, export_project, validate_project
    from nmig.importer.runner import ImportOptions, default_report_path, run_import

    source_project = validate_project(options.source_project)
    if not options.target_project or not re.fullmatch(r"[\w.-]+/[\w.-]+", options.target_project.strip()):
        raise NmigError(f"--to {options.target_project!r}: expected WORKSPACE/PROJECT")
    target_project = options.target_project.strip()
    legacy_token, api_token = _check_tokens(options)
    _preflight_target(api_token)

    result = MigrateResult(report_path=default_report_path(options.out, target_project))
    export_outcome: dict[str, Any] = {}

    def export() -> None:
        try:
            export_outcome["result"] = export_project(
                ExportOptions(
                    project=source_project,
                    out=options.out,
                    api_token=legacy_token,
                    query=options.query,
                    runs=options.runs,
                    include_trashed=options.include_trashed,
                    max_workers=options.max_workers,
                    quiet=True,
                ),
            )
        except BaseException as exc:  # surfaced in the caller's thread below
            export_outcome["error"] = exc

    exporter = threading.Thread(target=export, name="nmig-migrate-export", daemon=True)
    bar = None
    if not options.quiet:
        from tqdm import tqdm

        bar = tqdm(desc="Migrating", unit=" run", file=sys.stderr)
    handed: set[str] = set()
    merger = _ReportMerger()
    import_error: NmigError | None = None
    started = time.monotonic()
    exporter.start()
    interrupted = False
    try:
        while True:
            exporting = exporter.is_alive()
            fresh = [sys_id for sys_id in _complete_runs(options.out) if sys_id not in handed]
            if fresh and (options.out / EXPORT_INFO).is_file() and import_error is None:
                handed.update(fresh)
                try:
                    batch = run_import(
                        ImportOptions(
                            bundle_dir=options.out,
                            project=target_project,
                            api_token=api_token,
                            # exact ids: escaped, since `--runs` values are also regular expressions
                            runs=[re.escape(sys_id) for sys_id in fresh],
                            max_workers=options.max_workers,
                            quiet=True,
                        )
                    )
                    result.imported += batch.imported
                    result.already_imported += batch.already
                except PartialFailure:
                    pass  # the batch's report says which runs failed; merged below
                except NmigError as exc:
                    import_error = exc  # bad token, unknown workspace...: stop importing, let the export finish
                merger.add(result.report_path)
                if bar is not None:
                    bar.update(len(fresh))
                    bar.set_postfix_str(f"imported {len(result.imported) + len(result.already_imported)}")
            if not exporting and not fresh:
                break
            if not fresh:
                time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        interrupted = True  # the export thread is a daemon: the process ends with it; a re-run resumes both
        raise
    finally:
        if not interrupted:
            exporter.join()
        if bar is not None:
            bar.close()
        merger.write(result.report_path)

    if "error" in export_outcome:
        error = export_outcome["error"]
        if isinstance(error, NmigError):
            raise error
        raise NmigError(f"the export stopped: {type(error).__name__}: {error}") from None
    if import_error is not None:
        raise NmigError(f"{import_error} (the export finished into {options.out}; fix this and re-run, or run `nmig import`)")
    exported = export_outcome["result"]
    result.exported = len(exported.exported)
    result.already_exported = len(exported.up_to_date)
    result.export_failed = [(sys_id, reason) for _, sys_id, reason in exported.failed]
    if merger.doc is not None:
        runs = merger.doc["runs"]
        result.import_failed = list(runs.get("failed", [])) + list(runs.get("refused", []))
    took = time.monotonic() - started
    line = f"nmig migrate: {result.summary()} in {took:.1f} s; bundle {options.out}; report {result.report_path}"
    print(line, file=sys.stderr if options.quiet else sys.stdout)
    if result.export_failed or result.import_failed:
        parts = []
        if result.export_failed:
            parts.append(f"{len(result.export_failed)} not exported ({', '.join(s for s, _ in result.export_failed[:10])})")
        if result.import_failed:
            parts.append(f"{len(result.import_failed)} not imported ({', '.join(result.import_failed[:10])})")
        raise PartialFailure("; ".join(parts) + "; re-run the same command to retry them")
    return result

