"""`nmig export`: a Neptune 2.x project into a bundle (see nmig.schema), through the official `neptune` client.

Public API: `ExportOptions`, `ExportResult`, `export_project(options)`, `validate_project(name)`; `--shard I/N`
is `nmig.sharding.Shard` (shared with the importer); a whole workspace (`--workspace`): `export_workspace(options)` ->
`WorkspaceExportResult`, and for `nmig migrate --workspace` `validate_workspace(name)`,
`choose_projects(workspace, token, include, exclude)` and `prepare_root(out, workspace, names, selection)`.

How it reads (modules): `source` opens the project with `neptune.init_project(mode="read-only")` and calls the
2.x API operations on the client's own swagger clients and authenticated session, taking bodies as raw JSON;
`pages` turns a series page into Arrow columns; `entity` exports one run/model/model version; `export` plans
(listing, --runs, --shard, resume, --update) and runs entities in a thread pool; `selection` is the pure logic.

Assumptions about the real 2.x service, which we cannot observe (the legacy emulator makes the same ones):
- `getExperimentAttributes` lists every attribute of a container with its `<type>Properties`, as the client's
  own `fetch()` of atoms relies on; gitRef/notebookRef/experimentState values are kept as those properties.
- Pages of the client's own size (1,000 points) are accepted; a server refusing a page size gets half of it,
  and one returning fewer points is still read completely: offsets follow what came back, and the total is
  checked against `totalItemCount`. Where the served spec pages float series by skipToStep, pages follow the
  last step received (points at or before it are dropped, so an inclusive and an exclusive server read alike).
- Non-finite floats arrive as bare NaN/Infinity tokens (or their strings); both are read exactly.
- A FileSeries (`imageSeries`) point's step (`x`), timestamp, name and description are its channel's values
  (`channelId`, getChannelValues; the published snapshots' ImageSeriesValuesDTO is only a count), in the
  order of the content indexes; the content is fetched by index as the client does, and its extension is
  taken from the content type, as the client does. A point without `x` keeps a null step.
- Artifact file metadata arrives as a list of key/value pairs; the bundle keeps it as a mapping, as the
  client's own ArtifactFileData does.
- All model versions of a project can be listed with one leaderboard search of type modelVersion (the client
  adds a `sys/model_id` filter per model; leaving it out lists them all).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nmig.lazy import lazy_names

if TYPE_CHECKING:  # the real names for type checkers, which do not run __getattr__
    from nmig.exporter.export import ExportOptions, ExportResult, export_project
    from nmig.exporter.selection import validate_project
    from nmig.exporter.workspace import (
        ProjectExport,
        WorkspaceExportResult,
        choose_projects,
        export_workspace,
        prepare_root,
        validate_workspace,
    )

# Imported by name when first used (as nmig.importer's): the neptune client behind `export` costs a third of
# a second, which `nmig migrate` should not pay just to check a project name before it starts its export.
_PUBLIC = {
    "ExportOptions": ("nmig.exporter.export", "ExportOptions"),
    "ExportResult": ("nmig.exporter.export", "ExportResult"),
    "export_project": ("nmig.exporter.export", "export_project"),
    "validate_project": ("nmig.exporter.selection", "validate_project"),
    "ProjectExport": ("nmig.exporter.workspace", "ProjectExport"),
    "WorkspaceExportResult": ("nmig.exporter.workspace", "WorkspaceExportResult"),
    "choose_projects": ("nmig.exporter.workspace", "choose_projects"),
    "export_workspace": ("nmig.exporter.workspace", "export_workspace"),
    "prepare_root": ("nmig.exporter.workspace", "prepare_root"),
    "validate_workspace": ("nmig.exporter.workspace", "validate_workspace"),
}


__getattr__ = lazy_names("nmig.exporter", _PUBLIC)


__all__ = [
    "ExportOptions",
    "ExportResult",
    "ProjectExport",
    "WorkspaceExportResult",
    "choose_projects",
    "export_project",
    "export_workspace",
    "prepare_root",
    "validate_project",
    "validate_workspace",
]
