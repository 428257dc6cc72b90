"""Typed errors of the 3.x emulator's backend, each carrying the answer the real backend gives for it.

The backend API's error model is `Error {code, message, type?, errorType?}` with `errorType` an
`ApiErrorTypeDTO` (backend.json, definitions Error and ApiErrorTypeDTO); createProject documents 400 with that
model and no 409 (backend.json, POST /api/backend/v1/projects). The extra fields an error carries (`key`,
`reason`, `requestedValue`, `allowedValues`) and the validationErrors shape of a taken name are what the
neptune 1.x client reads from the same backend (neptune/internal/backends/swagger_client_wrapper.py 68-84;
neptune/management/internal/api.py 264 with neptune/internal/backends/utils.py 256-261).

This module imports nothing of the emulator, so the store, the backends and the handlers can all raise and
catch these without an import cycle.
"""

from __future__ import annotations

import json
from typing import Any


class BackendError(Exception):
    """An error the backend API answers with `status` and `body()` (JSON unless `text` is set)."""

    status = 400
    error_type: str | None = None

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.status, "message": self.message}
        if self.error_type is not None:
            body.update(errorType=self.error_type, type=self.error_type)
        return {**body, **self.fields}

    def wire(self) -> tuple[int, bytes, str]:
        """(status, body bytes, content type)."""
        return self.status, json.dumps(self.body()).encode("utf-8"), "application/json"


class ProjectNameTaken(BackendError):
    """A project of that name exists in the workspace: 400 with a validation error ERR_NOT_UNIQUE on the name
    (neptune/management/internal/api.py 262-266 maps exactly this to ProjectAlreadyExists)."""

    def __init__(self, workspace: str, name: str) -> None:
        super().__init__(f'Project with name "{name}" already exists.')
        self.fields = {
            "validationErrors": [{"path": "name", "errors": [{"errorCode": {"name": "ERR_NOT_UNIQUE"}, "context": name}]}]
        }


class ProjectKeyTaken(BackendError):
    """Another project of the workspace already has the key asked for."""

    error_type = "PROJECT_KEY_COLLISION"

    def __init__(self, workspace: str, key: str) -> None:
        super().__init__(f'Project with key "{key}" already exists.', key=key)
        self.workspace = workspace
        self.key = key


class ProjectKeyInvalid(BackendError):
    error_type = "PROJECT_KEY_INVALID"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f'Invalid project key "{key}": {reason}', key=key, reason=reason)


class ProjectNameInvalid(BackendError):
    error_type = "PROJECT_NAME_INVALID"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f'Invalid project name "{name}": {reason}', name=name, reason=reason)


class VisibilityRestricted(BackendError):
    """The workspace's plan does not allow the visibility asked for."""

    error_type = "VISIBILITY_RESTRICTED"

    def __init__(self, requested: str, allowed: list[str]) -> None:
        super().__init__(f"Project visibility {requested!r} is not allowed; allowed: {', '.join(allowed)}",
                         requestedValue=requested, allowedValues=allowed)


class InvalidRequest(BackendError):
    """A body the backend cannot take (ASSUMPTION: a plain 400 Error without an errorType)."""


class Unauthenticated(BackendError):
    """A missing, invalid or expired credential (backend.json lists 401 for every operation). ASSUMPTION: the
    body is the Error model without an errorType."""

    status = 401


class OrganizationNotFound(BackendError):
    """An unknown workspace: a plain-text 404, which neptune-scale matches with "Organization .* not found"
    (neptune_scale/net/projects.py 33 and 79: "We need to match plain text, as this is what the backend returns")."""

    status = 404

    def __init__(self, workspace: str) -> None:
        super().__init__(f"Organization {workspace} not found")

    def wire(self) -> tuple[int, bytes, str]:
        return self.status, self.message.encode("utf-8"), "text/plain"


class ProjectNotFound(BackendError):
    """ASSUMPTION: an unknown project is a 404 Error (backend.json lists 404 for getProject, without a body)."""

    status = 404

    def __init__(self, qualified: str) -> None:
        super().__init__(f"Project {qualified} not found")
