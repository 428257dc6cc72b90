"""A workspace root: one folder holding one ordinary bundle per exported project, and an index naming them.

ROOT/nmig-root.json (the index) lists the workspace and, per project, the legacy project's name and the
folder of its bundle (ROOT/<folder>/, a bundle as any other). `nmig export --workspace` writes it before the
projects' exports start; `nmig import`, `verify`, `inspect` and `migrate` tell a root from a bundle by it.

The index is untrusted on read like everything in a bundle: its format and version are checked, every folder
is one safe name (`safe_component`) inside the root, no folder or project appears twice, and a folder that is
there must be a real folder (not a symlink to elsewhere). The format is described in docs/bundle-format.md.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmig import __version__
from nmig.schema.format import BundleError, check_format, safe_component
from nmig.schema.reader import _load_json
from nmig.schema.store import BundleRoot, Location, open_root
from nmig.schema.writer import dump_json

ROOT_INDEX = "nmig-root.json"
ROOT_FORMAT_NAME = "nmig-root"
ROOT_FORMAT_VERSION = "1.0"
# A legacy workspace or project name, as the 2.x service allows them (letters, digits, `_`, `.`, `-`).
_NAME = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class RootProject:
    """One project of a root: the legacy project's name (in the root's workspace) and its bundle's folder."""

    project: str
    folder: str


@dataclass
class WorkspaceRoot:
    """A root as its index describes it; `bundle_dir(entry)` is where that project's bundle is."""

    store: BundleRoot
    workspace: str
    projects: list[RootProject] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path | str:
        """The root's folder (a Path) or URL."""
        return self.store.path

    def bundle_dir(self, entry: RootProject) -> Path | str:
        """Where the project's bundle is: a Path, or a URL on object storage."""
        return self.store.join(entry.folder)

    def qualified(self, entry: RootProject) -> str:
        """"workspace/project" of the legacy project."""
        return f"{self.workspace}/{entry.project}"


def is_root(location: Location | BundleRoot, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether `location` holds a root index (a bundle has export.json instead)."""
    try:
        return open_root(location, storage_options).kind(ROOT_INDEX) is not None
    except (OSError, BundleError):
        return False


def project_folder(project: str) -> str:
    """The folder name of a project's bundle inside the root: the project name itself when it is one safe
    name (Neptune's project names are), else BundleError."""
    if not isinstance(project, str) or not _NAME.fullmatch(project):
        raise BundleError(f"unsafe project name {project!r}: not a plain Neptune project name")
    return safe_component(project)


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise BundleError(f"{what} {str(value)[:60]!r} is not a plain Neptune name")
    return value


def read_root(location: Location | BundleRoot, storage_options: Mapping[str, Any] | None = None) -> WorkspaceRoot:
    """The root at `location` (a folder or URL), its index validated; BundleError (one line) when it is not a
    root or is damaged."""
    root = open_root(location, storage_options)
    where = f"{root}/{ROOT_INDEX}"
    doc = _load_json(root, ROOT_INDEX, where)
    check_format(doc, f"root index {where}", ROOT_FORMAT_NAME)
    assert isinstance(doc, dict)  # check_format refused anything else
    workspace = _check_name(doc.get("workspace"), f"{where}: workspace")
    raw_projects = doc.get("projects")
    if not isinstance(raw_projects, list):
        raise BundleError(f"{where}: projects must be a list")
    projects: list[RootProject] = []
    seen_projects: set[str] = set()
    seen_folders: set[str] = set()
    for index, raw in enumerate(raw_projects):
        if not isinstance(raw, dict):
            raise BundleError(f"{where}: projects[{index}] is not an object")
        name = _check_name(raw.get("project"), f"{where}: projects[{index}].project")
        try:
            folder = safe_component(raw.get("folder"))
        except BundleError as exc:
            raise BundleError(f"{where}: projects[{index}].folder: {exc}") from None
        # Folders compared case-insensitively: on macOS and Windows two such names are one folder.
        if name in seen_projects or folder.lower() in seen_folders:
            raise BundleError(f"{where}: project {name!r} or folder {folder!r} is listed twice")
        kind = root.kind(folder)
        if kind not in (None, "folder"):
            raise BundleError(f"{where}: {folder} is {kind}, not a folder; refusing to follow it")
        seen_projects.add(name)
        seen_folders.add(folder.lower())
        projects.append(RootProject(name, folder))
    selection = doc.get("selection") if isinstance(doc.get("selection"), dict) else {}
    return WorkspaceRoot(root, workspace, projects, dict(selection))


def write_root(
    location: Location | BundleRoot,
    workspace: str,
    projects: Sequence[RootProject],
    selection: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None = None,
) -> WorkspaceRoot:
    """Write ROOT/nmig-root.json whole (format name, version, nmig version filled in) and return it as
    `read_root` reads it. Project and folder names are checked as the reader checks them."""
    root = open_root(location, storage_options)
    root.prepare()
    _check_name(workspace, "workspace")
    for entry in projects:
        _check_name(entry.project, "project")
        safe_component(entry.folder)
    doc = {
        "format": ROOT_FORMAT_NAME,
        "format_version": ROOT_FORMAT_VERSION,
        "nmig_version": __version__,
        "workspace": workspace,
        "selection": dict(selection),
        "projects": [{"project": e.project, "folder": e.folder} for e in sorted(projects, key=lambda e: e.project)],
        "written_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
    }
    root.write_bytes(ROOT_INDEX, dump_json(doc))
    return read_root(root)
