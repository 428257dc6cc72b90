"""`nmig export --workspace WS`: every chosen project of a workspace, one bundle each under one root.

The projects are listed (`source.list_workspace_projects`), chosen by --projects / --exclude-projects
(`selection.ProjectMatcher`), the root index is written (`nmig.schema.write_root`: before any export starts,
so a root interrupted half way is still read as one, each project's bundle as far as it got), and each project
is exported by `export_project` into ROOT/<project>/, exactly as `nmig export --project WS/P --out ROOT/P`
would, several at once within the one --max-workers budget (`nmig.workers`). A re-run resumes every project.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.errors import NmigError, PartialFailure
from nmig.exporter.export import ExportOptions, ExportResult, export_project
from nmig.exporter.selection import ProjectMatcher
from nmig.schema.format import EXPORT_INFO, BundleError
from nmig.schema.root import RootProject, WorkspaceRoot, is_root, project_folder, read_root, write_root
from nmig.schema.store import Location, open_root
from nmig.workers import run_projects, share_workers

_WORKSPACE = re.compile(r"[\w.-]+")


@dataclass
class ProjectExport:
    """One project of a workspace export: where its bundle is and what its export did (or why it could not)."""

    project: str  # "workspace/project" in 2.x
    bundle_dir: Path | str | None  # a folder, or a URL on object storage
    result: ExportResult | None = None
    error: str | None = None

    def line(self) -> str:
        where = f" -> {self.bundle_dir}" if self.bundle_dir else ""
        return f"{self.project}{where}: {self.result.summary() if self.result else f'FAILED: {self.error}'}"

    @property
    def ok(self) -> bool:
        return self.result is not None and not self.result.failed


@dataclass
class WorkspaceExportResult:
    workspace: str
    root: Path | str
    projects: list[ProjectExport] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per project: which legacy project went into which bundle, and how it went."""
        return [p.line() for p in self.projects]

    def summary(self) -> str:
        failed = sum(not p.ok for p in self.projects)
        entities = sum(len(p.result.exported) for p in self.projects if p.result)
        return (
            f"workspace {self.workspace}: {len(self.projects)} project(s), {len(self.projects) - failed} complete, "
            f"{failed} incomplete or failed; {entities} entities exported"
        )

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when some project failed or left entities incomplete."""
        bad = [p.project for p in self.projects if not p.ok]
        if bad:
            raise PartialFailure(
                f"{len(bad)} project(s) not exported completely ({', '.join(bad[:10])}); re-run the same command to retry them"
            )


def validate_workspace(name: str | None) -> str:
    if not name or not _WORKSPACE.fullmatch(name.strip()):
        raise NmigError(f"--workspace {name!r}: expected a workspace name")
    return name.strip()


def choose_projects(workspace: str, api_token: str, include: str | None, exclude: str | None) -> list[str]:
    """The names of the workspace's projects that --projects / --exclude-projects choose, sorted; NmigError
    when none is chosen. Patterns are checked before the server is asked."""
    matcher = ProjectMatcher(include, exclude)
    from nmig.exporter.source import list_workspace_projects

    listed = list_workspace_projects(workspace, api_token)
    chosen = [name for name in listed if matcher.matches(name)]
    if not chosen:
        said = " ".join(f"{o} {p!r}" for o, p in (("--projects", include), ("--exclude-projects", exclude)) if p)
        raise NmigError(
            f"no project of workspace {workspace} is chosen ({len(listed)} listed{', ' + said if said else ''})"
        )
    return chosen


def prepare_root(
    out: Location, workspace: str, names: list[str], selection: dict[str, object],
    storage_options: Mapping[str, Any] | None = None,
) -> tuple[WorkspaceRoot, list[ProjectExport]]:
    """Write the root index at `out` (a folder or URL) for `names` (plus the projects an earlier export of this
    root listed: nothing already exported is forgotten) and return it with the projects whose names cannot be
    folders, as failures. NmigError when `out` holds something else: a bundle, another workspace's root, other
    files."""
    store = open_root(out, storage_options)
    previous: list[RootProject] = []
    if is_root(store):
        earlier = read_root(store)
        if earlier.workspace != workspace:
            raise NmigError(f"{out} holds an export of workspace {earlier.workspace}, not {workspace}; use another --out folder")
        previous = earlier.projects
    else:
        there = [name for name, _ in store.entries("") if not name.startswith(".")]
        if EXPORT_INFO in there:
            raise NmigError(f"{out} is a bundle of one project, not a workspace root; choose a new or empty folder for --out")
        if there:
            raise NmigError(f"{out} is not empty and not an nmig workspace root; choose a new or empty folder for --out")
    entries = {e.project: e for e in previous}
    refused: list[ProjectExport] = []
    for name in names:
        try:
            entries.setdefault(name, RootProject(name, project_folder(name)))
        except BundleError as exc:
            refused.append(ProjectExport(f"{workspace}/{name}", None, error=str(exc)))
    try:
        root = write_root(store, workspace, list(entries.values()), selection)
    except OSError as exc:
        raise NmigError(f"cannot write the root index in {out}: {exc.strerror or exc}") from None
    return root, refused


def export_workspace(options: ExportOptions) -> WorkspaceExportResult:
    """Everything `nmig export --workspace` does but printing: NmigError for bad input (no token, a bad name or
    pattern, no project chosen, an --out that is not a root); the caller prints `lines()` and `summary()` and
    decides the exit (`raise_for_failures`)."""
    if options.project:
        raise NmigError("--workspace and --project exclude each other: export one project or a whole workspace")
    if not options.api_token or not options.api_token.strip():
        raise NmigError("no API token: pass --api-token or set NEPTUNE_API_TOKEN")
    token = options.api_token.strip()
    workspace = validate_workspace(options.workspace)
    names = choose_projects(workspace, token, options.projects, options.exclude_projects)
    selection = {"projects": options.projects, "exclude_projects": options.exclude_projects}
    root, refused = prepare_root(options.out, workspace, names, selection, options.storage_options)
    chosen = [e for e in root.projects if e.project in set(names)]
    result = WorkspaceExportResult(workspace, options.out, list(refused))
    at_once, each = share_workers(options.max_workers, len(chosen))

    def one(entry: RootProject) -> ProjectExport:
        done = ProjectExport(root.qualified(entry), root.bundle_dir(entry))
        project_options = dataclasses.replace(
            options, project=done.project, out=root.bundle_dir(entry), workspace=None, projects=None,
            exclude_projects=None, api_token=token, max_workers=each, quiet=True,
        )
        try:
            done.result = export_project(project_options)
        except NmigError as exc:  # this project cannot be exported (refused, unreadable): the others go on
            done.error = str(exc)
        if not options.quiet:  # progress: the projects finish one by one; the caller prints the lines at the end
            print(f"nmig export: {done.project} {'done' if done.ok else 'not complete'}", file=sys.stderr, flush=True)
        return done

    result.projects += run_projects(chosen, at_once, one)
    result.projects.sort(key=lambda p: p.project)
    return result
