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


def _statuses(report: Path, ids: list[str]) -> dict[str, list[str]]:
    """What the import report (which covers every invocation) says about `ids`: {status: [ids]}."""
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    wanted = set(ids)
    runs = doc.get("runs") if isinstance(doc, dict) and isinstance(doc.get("runs"), dict) else {}
    return {status: [i for i in listed if i in wanted] for status, listed in runs.items() if isinstance(listed, list)}


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
                    run_import(
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
                except PartialFailure:
                    pass  # the report says which runs failed and why
                except NmigError as exc:
                    import_error = exc  # bad token, unknown workspace...: stop importing, let the export finish
                statuses = _statuses(result.report_path, fresh)
                result.imported += statuses.get("imported", [])
                result.already_imported += statuses.get("already_imported", [])
                result.import_failed += statuses.get("failed", []) + statuses.get("refused", [])
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

