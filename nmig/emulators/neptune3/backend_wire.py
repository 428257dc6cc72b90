"""Serialisers of the 3.x emulator's backend API: the DTOs of backend.json and error answers."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from nmig.emulators.http import Response
from nmig.emulators.neptune3.errors import BackendError
from nmig.emulators.neptune3.store import Project


def _uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"neptune-{kind}:{name}"))


def _time(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def project_dto(project: Project) -> dict[str, Any]:
    """backend.json ProjectDTO (getProject's answer): no visibility, no description."""
    return {
        "id": _uuid("project", project.qualified_name),
        "name": project.name,
        "organizationName": project.workspace,
        "organizationId": _uuid("workspace", project.workspace),
        "projectKey": project.key,
        "version": 2,
    }


def project_with_role_dto(project: Project) -> dict[str, Any]:
    """backend.json ProjectWithRoleDTO (createProject's answer and listProjects' entries), every required field.
    ASSUMPTION: the values of the fields nmig and the clients never read (role, avatar, counts) are plausible
    constants."""
    created = _time(project.created_ms)
    return {
        **project_dto(project),
        "visibility": project.visibility,
        "description": project.description,
        "timeOfCreation": created,
        "lastActivity": created,
        "userCount": 1,
        "organizationType": "team",
        "featured": False,
        "codeAccess": "default",
        "userRoleInProject": "manager",
        "userRoleInOrganization": "owner",
        "avatarUrl": "",
        "avatarSource": "default",
        "archived": False,
    }


def project_list_dto(entries: list[Project], matching: int, total: int) -> dict[str, Any]:
    return {"entries": [project_with_role_dto(p) for p in entries], "matchingItemCount": matching, "totalItemCount": total}


def error_response(error: BackendError) -> Response:
    status, body, content_type = error.wire()
    return Response(status, body, content_type=content_type)
