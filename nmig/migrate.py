"""`nmig migrate`: export and import pipelined on one machine that holds both tokens.

The export runs as `nmig export` in a child process and commits each run into the bundle folder as usual; this
process runs `nmig import`'s own `run_import` once, fed with every run whose bundle completes, as it completes
(`ExportFeed`), so all import workers stay busy while the export goes on. Nothing new happens
to the data: the bundle on disk, the import state file and the import report are exactly those of
`nmig export --out DIR` followed by `nmig import DIR`, so a killed or failed migrate is resumed by running it
again (or by running the two commands by hand), and `nmig verify DIR` checks the result.

The exporter and the importer never import each other; this module is the only place that uses both.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nmig.child_gate import GATE_ENV, GO
from nmig.errors import NmigError, PartialFailure
from nmig.parent_death import DIE_WITH_PARENT_ENV
from nmig.schema import local_path
from nmig.schema.format import COMPLETE, EXPORT_INFO, KIND_FOLDERS

if TYPE_CHECKING:
    from nmig.importer.state import StateFile

LEGACY_TOKEN_ENV = "NEPTUNE_LEGACY_API_TOKEN"
# How often migrate looks for the bundle's export.json before the import can start.
EXPORT_INFO_POLL_S = 0.1


@dataclass
class MigrateOptions:
    source_project: str | None
    target_project: str | None
    out: Path  # a local folder (a file:// URL names one); a store URL is refused
    legacy_token: str | None
    api_token: str | None
    runs: tuple[str, ...] = ()
    query: str | None = None
    include_trashed: bool = False
    max_workers: int = 4
    quiet: bool = False
    experiments: str = "by-name"  # as `nmig import --experiments`
    models_as_runs: bool = False  # as `nmig import --models-as-runs`
    update: bool = False  # the cut-over: `nmig export --update`, then the import re-syncs what changed
    sync_trash: bool = False  # as `nmig import --sync-trash`
    # a whole workspace (migrate_workspace): --workspace instead of --from, --to a 3.x workspace
    workspace: str | None = None
    projects: str | None = None  # as `nmig export --projects`
    exclude_projects: str | None = None  # as `nmig export --exclude-projects`
    project_map: tuple[str, ...] = ()  # as `nmig import --project-map`


@dataclass
class MigrateResult:
    export_summary: str = ""  # the last line of `nmig export`
    export_failed: list[tuple[str, str]] = field(default_factory=list)  # (sys_id, reason)
    imported: list[str] = field(default_factory=list)
    already_imported: list[str] = field(default_factory=list)
    import_failed: list[str] = field(default_factory=list)
    report_path: StateFile | None = None
    bundle: Path | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        return (
            f"export: {self.export_summary}; "
            f"imported {len(self.imported)} ({len(self.already_imported)} already imported, {len(self.import_failed)} failed)"
        )

    def final_line(self) -> str:
        """The one line `nmig migrate` ends with."""
        return f"nmig migrate: {self.summary()} in {self.seconds:.1f} s; bundle {self.bundle}; report {self.report_path}"

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when some runs were not exported or not imported."""
        if self.export_failed or self.import_failed:
            parts = []
            if self.export_failed:
                parts.append(f"{len(self.export_failed)} not exported ({', '.join(s for s, _ in self.export_failed[:10])})")
            if self.import_failed:
                parts.append(f"{len(self.import_failed)} not imported ({', '.join(self.import_failed[:10])})")
            raise PartialFailure("; ".join(parts) + "; re-run the same command to retry them")


def _complete_runs(out: Path, known: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Runs whose folder carries the COMPLETE marker (the writer renames a finished folder into place, so a
    run either is not there yet or is there in full), leaving out the `known` ones without looking into them."""
    folder = out / KIND_FOLDERS["run"]
    if not folder.is_dir():
        return []
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if entry.name not in known and entry.is_dir(follow_symlinks=False) and (Path(entry.path) / COMPLETE).is_file()
    )


def _commit_marks(out: Path) -> dict[str, tuple[int, int] | None]:
    """{run: identity of its COMPLETE file} of the runs committed now: a run the export replaces gets a new
    COMPLETE (a new file in a new folder), so a changed identity means a new version of the run."""
    return {run: _identity(out, run) for run in _complete_runs(out)}


def _identity(out: Path, run: str) -> tuple[int, int] | None:
    return _identity_of(out / KIND_FOLDERS["run"] / run / COMPLETE)


class ExportFeed:
    """The runs the export child completes, for `run_import` (a `RunFeed`): each poll yields the runs completed
    since the last one; the feed is finished once the export has ended and every run it completed was yielded.

    `held` (--update): the runs the bundle held before this export, by COMPLETE identity. While the export runs,
    only those it re-exported (or new ones) are yielded: the others may still be re-exported, and a run is yielded
    once; what is left of them is yielded when the export has ended."""

    def __init__(self, out: Path, exporter: subprocess.Popen[bytes], held: dict[str, tuple[int, int] | None] | None = None) -> None:
        self._out = out
        self._exporter = exporter
        self._handed: set[str] = set()
        self._held = held or {}

    def poll(self) -> tuple[list[str], bool]:
        exporting = self._exporter.poll() is None  # asked before the scan: nothing completes after a final scan
        fresh = _complete_runs(self._out, self._handed)
        if exporting and self._held:
            fresh = [run for run in fresh if run not in self._held or _identity(self._out, run) != self._held[run]]
        self._handed.update(fresh)
        return fresh, not exporting

    @property
    def handed(self) -> int:
        return len(self._handed)


def _check_tokens(options: MigrateOptions) -> tuple[str, str]:
    """Both tokens, the 3.x one checked against the service before anything is exported."""
    from nmig.importer import check_api_token

    return _legacy_token(options), check_api_token(options.api_token, "3.x API token")


def _legacy_token(options: MigrateOptions) -> str:
    legacy = (options.legacy_token or os.environ.get(LEGACY_TOKEN_ENV) or "").strip()
    if not legacy:
        raise NmigError(f"no 2.x API token: pass --legacy-token or set {LEGACY_TOKEN_ENV}")
    return legacy


# The export child's share of --max-workers. The import is the slower half (per run it validates, creates,
# sends, uploads and waits for confirmations), so an export as wide as the import only races ahead: it takes
# CPU the import needs, and its runs, progressing side by side, complete in one wave late instead of one by
# one from the start. benchmarks/bench_latency.py at 50 ms, 40 runs, --max-workers 16: migrate in 8.7-9.1 s
# with 16 export workers, 7.1-8.3 s with 4; at --max-workers 4: 8.7 s with 4, 8.1-8.3 s with 2.
EXPORT_SHARE = 4
MIN_EXPORT_WORKERS = 2


def export_workers(max_workers: int) -> int:
    """The export child's workers for `nmig migrate --max-workers max_workers` (the import gets them all)."""
    return min(max_workers, max(MIN_EXPORT_WORKERS, max_workers // EXPORT_SHARE))


def _export_command(options: MigrateOptions, source_project: str) -> list[str]:
    command = [sys.executable, "-m", "nmig", "export", "--project", source_project, "--out", str(options.out),
               "--max-workers", str(export_workers(options.max_workers)), "--quiet"]
    if options.query:
        command += ["--query", options.query]
    for pattern in options.runs:
        command += ["--runs", pattern]
    if options.include_trashed:
        command.append("--include-trashed")
    if options.update:
        command.append("--update")
    return command


def _identity_of(path: Path) -> tuple[int, int] | None:
    """A file's identity (inode, modification time): export.json is replaced whole by each write."""
    try:
        found = path.stat()
    except OSError:
        return None
    return (found.st_ino, found.st_mtime_ns)


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def migrate(options: MigrateOptions) -> MigrateResult:
    """Everything `nmig migrate` does but printing its final line: NmigError for bad input; the caller prints
    `final_line()` and decides the exit (`MigrateResult.raise_for_failures`: some runs not exported or not
    imported; re-run the same command to retry them)."""
    from nmig.exporter import validate_project
    from nmig.secrets import redact

    if options.projects or options.exclude_projects or options.project_map:
        raise NmigError("--projects, --exclude-projects and --project-map choose and name the projects of --workspace; pass --workspace WS")
    source_project = validate_project(options.source_project)
    if not options.target_project or not re.fullmatch(r"[\w.-]+/[\w.-]+", options.target_project.strip()):
        raise NmigError(f"--to {options.target_project!r}: expected WORKSPACE/PROJECT")
    target_project = options.target_project.strip()
    if options.sync_trash and not options.update:
        raise NmigError("--sync-trash needs --update (only an updating export finds the runs trashed since)")
    out = local_path(options.out)
    if out is None:
        # The import follows the export by watching the bundle folder; on a store, run the two commands.
        raise NmigError(
            f"--out {options.out}: nmig migrate writes a local bundle folder; for object storage run "
            "`nmig export --out URL` and then `nmig import URL`"
        )
    options = dataclasses.replace(options, out=out)
    legacy_token = _legacy_token(options)
    # --update: what the bundle holds before this export, so the import waits for this export's export.json
    # (its "trashed") and takes a run while the export goes on only once it is re-exported or new
    held = _commit_marks(options.out) if options.update else {}
    info_before = _identity_of(options.out / EXPORT_INFO) if options.update else None

    # The export runs as `nmig export` in a child process: its own interpreter (the two halves do not share one
    # GIL, so they really overlap on two cores) and exactly the behaviour of the command. The 2.x token reaches
    # it through its environment, never its command line. It starts first, behind a gate (nmig.child_gate):
    # its start-up overlaps this process's own (the importer's imports) and the 3.x token's round trips, and it
    # goes on only once that token is accepted, so a refused one leaves nothing exported.
    import tempfile

    with tempfile.NamedTemporaryFile("w", prefix="nmig-migrate-export-", suffix=".log", delete=False) as log:
        export_log = Path(log.name)
        exporter = subprocess.Popen(
            _export_command(options, source_project),
            # DIE_WITH_PARENT_ENV: the child asks Linux to kill it when this process dies (nmig.parent_death),
            # itself at its start rather than through a preexec_fn, which would run Python in a forked child of
            # a process whose other threads (another project's import, under `migrate --workspace`) may hold
            # locks at the fork: such a child was seen to hang before its exec.
            env={**os.environ, "NEPTUNE_API_TOKEN": legacy_token, DIE_WITH_PARENT_ENV: str(os.getpid()), GATE_ENV: "1"},
            stdout=log,
            stderr=log,
            stdin=subprocess.PIPE,
        )
    assert exporter.stdin is not None
    try:
        from nmig.importer import ImportOptions, check_api_token, default_report_path, run_import

        api_token = check_api_token(options.api_token, "3.x API token")
    except BaseException:
        exporter.stdin.close()  # the child exits at its gate
        exporter.wait()
        export_log.unlink(missing_ok=True)
        raise
    options.out.mkdir(parents=True, exist_ok=True)
    result = MigrateResult(report_path=default_report_path(options.out, target_project), bundle=options.out)
    import_error: NmigError | None = None
    feed: ExportFeed | None = None
    started = time.monotonic()
    try:
        try:
            exporter.stdin.write(GO.encode() + b"\n")
            exporter.stdin.close()
        except OSError:
            pass  # the child is gone already: its exit status says why, below
        # The import starts once the export has written the bundle's export.json (the source project's key,
        # visibility and description, which the import creates the target project with).
        while exporter.poll() is None and (
            not (options.out / EXPORT_INFO).is_file() or (info_before is not None and _identity_of(options.out / EXPORT_INFO) == info_before)
        ):
            time.sleep(EXPORT_INFO_POLL_S)
        if (options.out / EXPORT_INFO).is_file():
            feed = ExportFeed(options.out, exporter, held)
            try:
                imported = run_import(
                    ImportOptions(bundle_dir=options.out, project=target_project, api_token=api_token,
                                  max_workers=options.max_workers, quiet=options.quiet,
                                  experiments=options.experiments, models_as_runs=options.models_as_runs,
                                  sync_trash=options.sync_trash),
                    feed=feed,
                )
                result.imported = imported.imported
                result.already_imported = imported.already
                result.import_failed = imported.failed + imported.refused
            except NmigError as exc:
                import_error = exc  # bad token, unknown workspace...: stop importing, let the export finish
                exporter.wait()
    finally:
        if exporter.poll() is None:  # interrupted: a re-run resumes both halves
            exporter.terminate()
        exporter.wait()

    export_line = redact(_last_line(export_log), legacy_token, api_token)
    export_log.unlink(missing_ok=True)
    status = exporter.returncode
    handed = feed.handed if feed is not None else 0
    if status == 2 or not (options.out / EXPORT_INFO).is_file() or (status not in (0, 1) and not handed):
        raise NmigError(
            f"the export failed: {export_line.removeprefix('nmig: error: ') or f'exit status {status}'} "
            f"(in nmig migrate the 2.x token comes from --legacy-token or {LEGACY_TOKEN_ENV})"
        )
    if import_error is not None:
        raise NmigError(f"{import_error} (the export finished into {options.out}; fix this and re-run, or run `nmig import`)")
    from nmig.schema import Bundle

    result.export_summary = export_line.removeprefix("nmig export: ")
    result.export_failed = [
        (entity.sys_id, entity.incomplete_reason or "") for entity in Bundle(options.out).entities("run") if not entity.complete
    ]
    if status != 0 and not result.export_failed:
        result.export_failed.append(("?", export_line or f"export exit status {status}"))
    result.seconds = time.monotonic() - started
    return result


@dataclass
class ProjectMigration:
    """One project of a workspace migration: where it went, and what came of it (or why it could not)."""

    legacy: str
    target: str
    bundle_dir: Path
    result: MigrateResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None and not (self.result.export_failed or self.result.import_failed)

    def line(self) -> str:
        return f"{self.legacy} -> {self.target} (bundle {self.bundle_dir}): " + (
            self.result.summary() if self.result is not None else f"FAILED: {self.error}"
        )


@dataclass
class WorkspaceMigrateResult:
    workspace: str
    root: Path
    projects: list[ProjectMigration] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [p.line() for p in self.projects]

    def final_line(self) -> str:
        failed = sum(not p.ok for p in self.projects)
        runs = sum(len(p.result.imported) for p in self.projects if p.result is not None)
        return (
            f"nmig migrate: workspace {self.workspace}: {len(self.projects)} project(s), {len(self.projects) - failed} "
            f"complete, {failed} with failures; {runs} run(s) imported in {self.seconds:.1f} s; root {self.root}"
        )

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when some project failed or has runs not exported or not imported."""
        bad = [p.legacy for p in self.projects if not p.ok]
        if bad:
            raise PartialFailure(
                f"{len(bad)} project(s) not migrated completely ({', '.join(bad[:10])}); re-run the same command to retry"
            )


def migrate_workspace(options: MigrateOptions) -> WorkspaceMigrateResult:
    """`nmig migrate --workspace WS --to WS3 --out ROOT`: every chosen project of the 2.x workspace, each by
    `migrate` into its bundle ROOT/<project>/ (the root `nmig export --workspace` writes, with its index) and its
    3.x project (the naming of `nmig import ROOT`: --project-map, else the same name in the workspace --to
    names). Several projects at once within --max-workers (nmig.workers). NmigError for bad input before
    anything is exported; one project's failure is its line, the others go on."""
    from nmig.exporter import choose_projects, prepare_root, validate_workspace
    from nmig.importer import parse_project_map, target_projects
    from nmig.workers import run_projects, share_workers

    if options.source_project:
        raise NmigError("--workspace and --from exclude each other: migrate one project or a whole workspace")
    workspace = validate_workspace(options.workspace)
    if not options.target_project or not re.fullmatch(r"[\w.-]+", options.target_project.strip()):
        raise NmigError(
            f"--to {options.target_project!r}: with --workspace, --to names a 3.x workspace (each project keeps its "
            "name there; --project-map LEGACY_WS/PROJECT=TARGET_WS/PROJECT for others)"
        )
    out = local_path(options.out)
    if out is None:
        raise NmigError(
            f"--out {options.out}: nmig migrate writes a local root folder; for object storage run "
            "`nmig export --workspace WS --out URL` and then `nmig import URL`"
        )
    project_map = parse_project_map(options.project_map)
    legacy_token, api_token = _check_tokens(options)
    started = time.monotonic()
    names = choose_projects(workspace, legacy_token, options.projects, options.exclude_projects)
    selection = {"projects": options.projects, "exclude_projects": options.exclude_projects}
    root, refused = prepare_root(out, workspace, names, selection)
    chosen = [entry for entry in root.projects if entry.project in set(names)]
    pairs = [(entry, target) for entry, target in target_projects(root, options.target_project.strip(), project_map) if entry in chosen]
    result = WorkspaceMigrateResult(workspace, out)
    result.projects += [ProjectMigration(p.project, "", out, error=p.error) for p in refused]
    at_once, each = share_workers(options.max_workers, len(pairs))

    def one(pair: tuple[Any, str]) -> ProjectMigration:
        entry, target = pair
        bundle_dir = root.bundle_dir(entry)
        done = ProjectMigration(root.qualified(entry), target, Path(bundle_dir))
        try:
            done.result = migrate(dataclasses.replace(
                options, source_project=done.legacy, target_project=target, out=done.bundle_dir,
                legacy_token=legacy_token, api_token=api_token, max_workers=each,
                quiet=options.quiet or at_once > 1,  # one progress bar per project would interleave
                workspace=None, projects=None, exclude_projects=None, project_map=(),
            ))
        except NmigError as exc:  # this project cannot be migrated: the others go on
            done.error = str(exc)
        if not options.quiet:
            print(f"nmig migrate: {done.legacy} -> {done.target} {'done' if done.ok else 'not complete'}",
                  file=sys.stderr, flush=True)
        return done

    result.projects += run_projects(pairs, at_once, one)
    result.seconds = time.monotonic() - started
    return result
