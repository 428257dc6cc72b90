"""`nmig import ROOT` and `nmig verify ROOT`: every project bundle of a workspace root (nmig.schema.read_root),
each into its own 3.x project, through the same `run_import` / `verify_bundle` as one bundle.

Target naming (`target_projects`): a legacy project named in `--project-map` goes where the map says; every
other one keeps its name in the workspace `--project WORKSPACE` names (`--project` is then a workspace only).
A project with neither is refused before anything is imported, as are two legacy projects sent to one target.

Imports run several projects at once within the one --max-workers budget (`nmig.workers`); each project keeps
its own state file and report in its bundle, as `nmig import ROOT/<project>` would. Options other than the
bundle, the target and the worker count are handed to each project's import as they are, so what one bundle's
import takes (--runs, --shard, ...) applies to every project.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig.errors import NmigError, PartialFailure
from nmig.importer.options import ImportOptions
from nmig.importer.project import parse_project_map
from nmig.importer.result import ImportResult
from nmig.importer.verify import VerifyOptions, VerifyResult
from nmig.schema import RootProject, WorkspaceRoot, read_root
from nmig.workers import run_projects, share_workers

_WORKSPACE = re.compile(r"[\w.-]+")
ROOT_VERIFY_REPORT_FORMAT = "nmig-verify-root-report"


def target_projects(
    root: WorkspaceRoot, requested: str | None, project_map: Mapping[str, str]
) -> list[tuple[RootProject, str]]:
    """(project of the root, "workspace/project" in 3.x) for every project of the root, by the naming rules
    above; NmigError (one line) for a --project that is not a workspace, a project without a target, or two
    projects with one target."""
    if requested and not _WORKSPACE.fullmatch(requested.strip()):
        raise NmigError(
            f"--project {requested!r}: a workspace root takes --project WORKSPACE (each project keeps its name "
            "there) and --project-map LEGACY_WS/PROJECT=TARGET_WS/PROJECT for the others"
        )
    pairs: list[tuple[RootProject, str]] = []
    for entry in root.projects:
        legacy = root.qualified(entry)
        target = project_map.get(legacy) or (f"{requested.strip()}/{entry.project}" if requested else None)
        if target is None:
            raise NmigError(
                f"no target for {legacy}: pass --project WORKSPACE (it keeps its name there) or map it with "
                f"--project-map {legacy}=WORKSPACE/PROJECT"
            )
        pairs.append((entry, target))
    unknown = sorted(set(project_map) - {root.qualified(e) for e in root.projects})
    if unknown:
        raise NmigError(f"--project-map names {', '.join(unknown)}, not in the root {root.path}")
    targets = [target for _, target in pairs]
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise NmigError(f"two legacy projects would go into {twice[0]}; give each its own target in --project-map")
    return pairs


@dataclass
class ProjectOutcome:
    """One project of a root: which legacy project went to which target, and what came of it."""

    legacy: str
    target: str
    bundle_dir: Path | str  # a folder, or a URL on object storage
    result: Any = None  # ImportResult or VerifyResult
    error: str | None = None

    def failed(self) -> bool:
        if self.error is not None or self.result is None:
            return True
        if isinstance(self.result, VerifyResult):
            return not self.result.ok
        return bool(self.result.failed or self.result.refused)


@dataclass
class RootImportResult:
    root: Path | str
    projects: list[ProjectOutcome] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per project: legacy -> target, and its import's summary or why it failed."""
        return [
            f"{p.legacy} -> {p.target}: " + (p.result.summary() if p.error is None else f"FAILED: {p.error}")
            for p in self.projects
        ]

    def summary(self) -> str:
        failed = sum(p.failed() for p in self.projects)
        runs = sum(len(p.result.imported) for p in self.projects if p.error is None)
        return (
            f"{len(self.projects)} project(s) of {self.root}: {len(self.projects) - failed} complete, {failed} with "
            f"failures; {runs} run(s) imported"
        )

    def raise_for_failures(self) -> None:
        """PartialFailure (exit 1) when any project failed or has runs not imported."""
        bad = [p.legacy for p in self.projects if p.failed()]
        if bad:
            raise PartialFailure(
                f"{len(bad)} project(s) not imported completely ({', '.join(bad[:10])}); re-run the same command to retry"
            )


@dataclass
class RootVerifyResult:
    root: Path | str
    projects: list[ProjectOutcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(p.failed() for p in self.projects)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ROOT_VERIFY_REPORT_FORMAT,
            "format_version": "1.0",
            "root": str(self.root),
            "ok": self.ok,
            "projects": [
                {"legacy": p.legacy, "target": p.target, "error": p.error,
                 "verify": p.result.to_json() if p.result is not None else None}
                for p in self.projects
            ],
        }

    def raise_for_differences(self, report: Path | None = None) -> None:
        """PartialFailure (exit 1) unless every project matches."""
        bad = [p.legacy for p in self.projects if p.failed()]
        if bad:
            raise PartialFailure(
                f"verify found differences in {len(bad)} project(s) ({', '.join(bad[:10])})"
                + (f"; report: {report}" if report else "")
            )


def _plan(
    root_dir: Path | str, storage_options: Mapping[str, Any] | None, requested: str | None, project_map: Sequence[str]
) -> tuple[WorkspaceRoot, list[tuple[RootProject, str]]]:
    root = read_root(root_dir, storage_options)  # BundleError (one line) for a damaged or tampered index
    if not root.projects:
        raise NmigError(f"the root {root_dir} lists no project")
    return root, target_projects(root, requested, parse_project_map(project_map))


def _each(
    root: WorkspaceRoot, pairs: list[tuple[RootProject, str]], max_workers: int, work: Callable[[ProjectOutcome, int], Any]
) -> list[ProjectOutcome]:
    """`work(outcome, workers)` per project within the budget; an NmigError of one project is that project's
    failure, the others go on."""
    at_once, each = share_workers(max_workers, len(pairs))

    def one(pair: tuple[RootProject, str]) -> ProjectOutcome:
        entry, target = pair
        outcome = ProjectOutcome(root.qualified(entry), target, root.bundle_dir(entry))
        try:
            outcome.result = work(outcome, each)
        except NmigError as exc:
            outcome.error = str(exc)
        return outcome

    return run_projects(pairs, at_once, one)


def import_root(options: ImportOptions) -> RootImportResult:
    """`nmig import ROOT`: every project of the root into its target; NmigError for bad input (a damaged
    index, naming that leaves a project without a target, a bad token); the caller prints `lines()` and
    `summary()` and decides the exit (`raise_for_failures`)."""
    from nmig.importer.project import check_api_token
    from nmig.importer.runner import run_import

    if options.state_path is not None:
        raise NmigError("--state names one project's state file; a workspace root keeps each project's in its bundle")
    root, pairs = _plan(options.bundle_dir, options.storage_options, options.project, options.project_map)
    api_token = options.api_token if options.dry_run else check_api_token(options.api_token)
    at_once, _ = share_workers(options.max_workers, len(pairs))

    def work(outcome: ProjectOutcome, workers: int) -> ImportResult:
        result = run_import(dataclasses.replace(
            options, bundle_dir=outcome.bundle_dir, project=outcome.target, project_map=(), api_token=api_token,
            max_workers=workers, quiet=options.quiet or at_once > 1,  # one progress bar per project would interleave
        ))
        if not options.quiet and not options.dry_run:
            print(f"nmig import: {outcome.legacy} -> {outcome.target} done", file=sys.stderr, flush=True)
        return result

    return RootImportResult(root.path, _each(root, pairs, options.max_workers, work))


def verify_root(options: VerifyOptions) -> RootVerifyResult:
    """`nmig verify ROOT`: every project of the root against its target (the naming of `nmig import ROOT`),
    each through `verify_bundle`; the caller prints `render_root_verify(result)` and decides the exit."""
    from nmig.importer.verify import verify_bundle

    if options.import_report is not None:
        raise NmigError("--import-report names one project's report; a workspace root keeps each project's in its bundle")
    root, pairs = _plan(options.bundle_dir, options.storage_options, options.project, options.project_map)
    at_once, _ = share_workers(options.max_workers, len(pairs))

    def work(outcome: ProjectOutcome, workers: int) -> VerifyResult:
        return verify_bundle(dataclasses.replace(
            options, bundle_dir=outcome.bundle_dir, project=outcome.target, project_map=(), report=None,
            max_workers=workers, quiet=options.quiet or at_once > 1,
        ))

    result = RootVerifyResult(root.path, _each(root, pairs, options.max_workers, work))
    if options.report is not None:
        from nmig.importer.state import write_json_atomically

        write_json_atomically(options.report, result.to_json())
    return result


def render_root_verify(result: RootVerifyResult) -> str:
    """Each project's verify table under a heading naming legacy and target, then one line per project and
    the total."""
    from nmig.importer.verify import render

    blocks: list[str] = []
    for p in result.projects:
        blocks.append(f"== {p.legacy} -> {p.target} ==")
        blocks.append(render(p.result) if p.error is None else f"FAILED: {p.error}")
    blocks.append("Projects:")
    for p in result.projects:
        verdict = "FAILED" if p.error is not None else "OK" if not p.failed() else "DIFFERENCES"
        blocks.append(f"  {p.legacy} -> {p.target}: {verdict}")
    bad = sum(p.failed() for p in result.projects)
    blocks.append(
        f"All {len(result.projects)} projects match." if not bad else f"DIFFERENCES FOUND in {bad} of {len(result.projects)} project(s)."
    )
    return "\n".join(blocks)


def render_root_plan(result: RootImportResult) -> str:
    """`nmig import ROOT --dry-run`: each project's plan under a heading naming legacy and target."""
    from nmig.importer.dry_run import render_plan

    blocks: list[str] = []
    for p in result.projects:
        blocks.append(f"== {p.legacy} -> {p.target} ==")
        blocks.append(render_plan(p.result) if p.error is None else f"FAILED: {p.error}")
    return "\n".join(blocks)

