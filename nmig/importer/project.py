"""The 3.x project an import or verify targets: its name, from `--project` and the bundle.

Making sure it exists (created with the legacy project's key, visibility and description when missing) is
`target.ensure_project`, which asks the service; naming it needs nothing but the bundle.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from nmig.errors import NmigError
from nmig.schema import Bundle

_NAME_PART = re.compile(r"[\w.-]+")
_QUALIFIED = re.compile(r"[\w.-]+/[\w.-]+")
# A --project-map file is small: a line per project of a workspace.
_MAP_FILE_MAX_BYTES = 1 << 20


def parse_project_map(values: Sequence[str]) -> dict[str, str]:
    """`--project-map` values, each `LEGACY_WS/PROJECT=TARGET_WS/PROJECT` or the path of a file with one such
    pair per line (blank lines and lines starting with # ignored), as {legacy: target}. NmigError with one
    line for a malformed pair, an unreadable file, or a legacy project mapped twice to different targets."""
    mapping: dict[str, str] = {}
    for value in values:
        if "=" in value:
            pairs = [(f"--project-map {value!r}", value)]
        else:
            try:
                with open(Path(value), encoding="utf-8") as fh:
                    text = fh.read(_MAP_FILE_MAX_BYTES + 1)
            except (OSError, UnicodeDecodeError) as exc:
                raise NmigError(f"--project-map {value!r}: neither SRC=DST nor a readable file ({exc})") from None
            if len(text) > _MAP_FILE_MAX_BYTES:
                raise NmigError(f"--project-map {value!r}: implausibly large for a project map")
            pairs = [
                (f"{value} line {number}", line.strip())
                for number, line in enumerate(text.splitlines(), 1)
                if line.strip() and not line.strip().startswith("#")
            ]
        for where, pair in pairs:
            legacy, _, target = (part.strip() for part in pair.partition("="))
            if not _QUALIFIED.fullmatch(legacy) or not _QUALIFIED.fullmatch(target):
                raise NmigError(f"{where}: expected LEGACY_WORKSPACE/PROJECT=TARGET_WORKSPACE/PROJECT")
            if mapping.get(legacy, target) != target:
                raise NmigError(f"{where}: {legacy} is mapped to both {mapping[legacy]} and {target}")
            mapping[legacy] = target
    return mapping


def legacy_project(bundle: Bundle) -> str | None:
    """"workspace/project" the bundle was exported from, or None when export.json does not say."""
    source = bundle.info.get("source") if isinstance(bundle.info.get("source"), dict) else {}
    workspace, name = source.get("workspace"), source.get("project")
    if isinstance(workspace, str) and isinstance(name, str) and _QUALIFIED.fullmatch(f"{workspace}/{name}"):
        return f"{workspace}/{name}"
    return None


def resolve_project(requested: str | None, bundle: Bundle, project_map: Mapping[str, str] | None = None) -> str:
    """"workspace/project" from `--project` ("workspace/project", or "workspace" to keep the legacy project's
    name there), unless `project_map` (parse_project_map) names the bundle's legacy project: then its target.
    NmigError with one clear line when it is missing or malformed."""
    mapped = (project_map or {}).get(legacy_project(bundle) or "")
    if mapped is not None:
        return mapped
    source = bundle.info.get("source") if isinstance(bundle.info.get("source"), dict) else {}
    legacy_name = source.get("project") if isinstance(source.get("project"), str) else None
    if legacy_name and "/" in legacy_name:
        legacy_name = legacy_name.split("/")[-1]
    if not requested:
        # A 3.x API token names no workspace, so the workspace has to be given.
        raise NmigError(
            "no target project: pass --project WORKSPACE/PROJECT, or --project WORKSPACE to keep the legacy "
            "project's name there (or set NEPTUNE_PROJECT)"
        )
    if "/" in requested:
        workspace, name = requested.split("/", 1)
    else:
        workspace, name = requested, legacy_name or ""
    if not _NAME_PART.fullmatch(workspace or "") or not _NAME_PART.fullmatch(name or ""):
        raise NmigError(f"invalid target project {requested!r}: expected WORKSPACE/PROJECT")
    return f"{workspace}/{name}"


def check_api_token(api_token: str | None, what: str = "API token") -> str:
    """The 3.x API token, stripped and tried against the service (target.check_token), so a bad token is
    found before anything is read or written; NmigError with one clear line otherwise."""
    from nmig.importer.target import check_token, require_api_token
    from nmig.loopback import prepare_client_env

    token = require_api_token(api_token, what)
    prepare_client_env(token)
    check_token(token)
    return token
