"""`nmig import` and `nmig verify`: a bundle (see nmig.schema) into Neptune 3.x through the official
`neptune-scale` client, exactly once, and read back through `neptune-query` to prove it.

Public API:
- import: `ImportOptions`, `ImportResult`, `run_import(options, progress=None, feed=None)`, `RunFeed` (where
  the runs come from as their bundles complete; `WholeBundle` is `nmig import`'s), `render_plan(result)`
  (the `--dry-run` text), `default_report_path(bundle_dir, project)`, `check_api_token(token)` (tried
  against the service before any work, as `nmig migrate` does);
- verify: `VerifyOptions`, `VerifyResult`, `verify_bundle(options)`, `render_verify(result)` (the table);
- workspace roots (one bundle per project, nmig.schema.read_root): `import_root(options)` ->
  `RootImportResult`, `verify_root(options)` -> `RootVerifyResult`, `render_root_verify(result)`,
  `render_root_plan(result)`, `parse_project_map(values)` (`--project-map`), `target_projects(root, workspace,
  project_map)` (which 3.x project each project of a root goes to: `nmig import ROOT`'s naming rules);
- both check their input and raise NmigError with one clear line; they return their result, and the caller
  prints it and decides the exit (`ImportResult.raise_for_failures`, `VerifyResult.raise_for_differences`).

How it works (modules): `rules` (the 2.x -> 3.x mapping, as data) and `limits` (3.x limits) feed `plan` (one
run's RunPlan); `intake` plans the runs that arrive and refuses what cannot be imported; `runner` schedules
them over `worker` threads, each replaying one run (`replay`, through `client` and `wire`) with its series
points streamed by `points`; `state` and `report` are the files an import leaves; `target` asks the service
(the project, a resumed run); `verify` and `verify_series` read the target back and compare it with the plan
and the same points stream. docs/architecture.md follows one run through all of them.

Names are imported on first use (the clients are large; `nmig --help` and the pure modules need none of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nmig.importer.deferred import defer_azure_sdk
from nmig.lazy import lazy_names

defer_azure_sdk()  # before any module here imports neptune-scale

if TYPE_CHECKING:
    from nmig.importer.dry_run import render_plan
    from nmig.importer.options import ImportOptions
    from nmig.importer.project import check_api_token, parse_project_map
    from nmig.importer.report import default_report_path
    from nmig.importer.result import ImportResult
    from nmig.importer.runner import RunFeed, WholeBundle, run_import
    from nmig.importer.verify import VerifyOptions, VerifyResult, verify_bundle
    from nmig.importer.verify import render as render_verify
    from nmig.importer.workspace import (
        RootImportResult,
        RootVerifyResult,
        import_root,
        render_root_plan,
        render_root_verify,
        target_projects,
        verify_root,
    )

_PUBLIC = {
    "ImportOptions": ("nmig.importer.options", "ImportOptions"),
    "ImportResult": ("nmig.importer.result", "ImportResult"),
    "RunFeed": ("nmig.importer.runner", "RunFeed"),
    "WholeBundle": ("nmig.importer.runner", "WholeBundle"),
    "run_import": ("nmig.importer.runner", "run_import"),
    "render_plan": ("nmig.importer.dry_run", "render_plan"),
    "default_report_path": ("nmig.importer.report", "default_report_path"),
    "check_api_token": ("nmig.importer.project", "check_api_token"),
    "VerifyOptions": ("nmig.importer.verify", "VerifyOptions"),
    "VerifyResult": ("nmig.importer.verify", "VerifyResult"),
    "verify_bundle": ("nmig.importer.verify", "verify_bundle"),
    "render_verify": ("nmig.importer.verify", "render"),
    "RootImportResult": ("nmig.importer.workspace", "RootImportResult"),
    "RootVerifyResult": ("nmig.importer.workspace", "RootVerifyResult"),
    "import_root": ("nmig.importer.workspace", "import_root"),
    "verify_root": ("nmig.importer.workspace", "verify_root"),
    "render_root_plan": ("nmig.importer.workspace", "render_root_plan"),
    "render_root_verify": ("nmig.importer.workspace", "render_root_verify"),
    "parse_project_map": ("nmig.importer.project", "parse_project_map"),
    "target_projects": ("nmig.importer.workspace", "target_projects"),
}


__getattr__ = lazy_names("nmig.importer", _PUBLIC)


__all__ = [
    "ImportOptions",
    "ImportResult",
    "RootImportResult",
    "RootVerifyResult",
    "RunFeed",
    "VerifyOptions",
    "VerifyResult",
    "WholeBundle",
    "check_api_token",
    "default_report_path",
    "import_root",
    "parse_project_map",
    "render_plan",
    "render_root_plan",
    "render_root_verify",
    "render_verify",
    "run_import",
    "target_projects",
    "verify_bundle",
    "verify_root",
]
