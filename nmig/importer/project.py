"""The 3.x project an import or verify targets: its name, from `--project` and the bundle.

Making sure it exists (created with the legacy project's key, visibility and description when missing) is
`target.ensure_project`, which asks the service; naming it needs nothing but the bundle.
"""

from __future__ import annotations

import re

from nmig.errors import NmigError
from nmig.schema import Bundle

_NAME_PART = re.compile(r"[\w.-]+")


def resolve_project(requested: str | None, bundle: Bundle) -> str:
    """"workspace/project" from `--project` ("workspace/project", or "workspace" to keep the legacy project's
    name there); NmigError with one clear line when it is missing or malformed."""
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
