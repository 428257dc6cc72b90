"""Projects of the 3.x emulator's backend API: creation with its checks, lookups; typed errors on refusal.

The handlers in server.py parse a request, call these and serialise the result (backend_wire.py); every
refusal is a nmig.emulators.neptune3.errors.BackendError carrying its wire answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nmig.emulators.neptune3.errors import (
    InvalidRequest,
    OrganizationNotFound,
    ProjectKeyInvalid,
    ProjectNameInvalid,
    ProjectNameTaken,
    ProjectNotFound,
    VisibilityRestricted,
)
from nmig.emulators.neptune3.store import Project, Store

# ASSUMPTION: project names of letters, digits, '-', '_' and '.', at most 50 characters (no evidence).
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")
# A project key as neptune-scale documents it (neptune_scale/projects.py, create_project's docstring): 1-10
# upper-case letters or digits, at least one a letter.
PROJECT_KEY = re.compile(r"(?=[0-9]*[A-Z])[A-Z0-9]{1,10}")
# backend.json ProjectVisibilityDTO
VISIBILITIES = ("priv", "pub", "workspace")
# ASSUMPTION: descriptions are limited like other free text of the backend; 4,096 characters is a guess.
MAX_DESCRIPTION = 4096


@dataclass
class Projects:
    store: Store
    workspace: str
    # The visibilities the workspace's plan allows (a plan refusing one answers VISIBILITY_RESTRICTED).
    allowed_visibilities: tuple[str, ...] = VISIBILITIES

    def create(self, workspace: object, name: object, key: object, visibility: object, description: object) -> Project:
        if workspace != self.workspace:
            raise OrganizationNotFound(str(workspace))
        if not isinstance(name, str) or not PROJECT_NAME.fullmatch(name):
            raise ProjectNameInvalid(str(name), "letters, digits, '-', '_' and '.', at most 50 characters")
        if key is not None and (not isinstance(key, str) or not PROJECT_KEY.fullmatch(key)):
            raise ProjectKeyInvalid(str(key), "must be 1-10 upper-case letters or digits, at least one a letter")
        # ASSUMPTION: a create without a visibility makes a private project (neptune-scale always sends one).
        visibility = "priv" if visibility is None else visibility
        if visibility not in VISIBILITIES:
            raise InvalidRequest(f"invalid visibility {visibility!r}; one of {', '.join(VISIBILITIES)}")
        if visibility not in self.allowed_visibilities:
            raise VisibilityRestricted(str(visibility), list(self.allowed_visibilities))
        description = "" if description is None else description  # None: "left empty", as the client documents
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
            raise InvalidRequest(f"description must be text of at most {MAX_DESCRIPTION} characters")
        # The name is checked first: a create whose name and key are both taken gets the name's answer.
        project = self.store.create_project(workspace, name, key=key, visibility=visibility, description=description)
        if project is None:
            raise ProjectNameTaken(workspace, name)
        return project

    def get(self, qualified: str | None) -> Project:
        if not qualified or qualified.count("/") != 1:
            raise ProjectNotFound(str(qualified))
        project = self.store.get_project(*qualified.split("/"))
        if project is None:
            raise ProjectNotFound(qualified)
        return project

    def search(self, organization: str | None, search_term: str | None, offset: int, limit: int) -> tuple[list[Project], int]:
        """One page of the workspace's projects whose name contains `search_term`, and how many match.
        ASSUMPTION: searchTerm matches a substring of the name, case-insensitively (no evidence)."""
        matching = [
            project
            for project in self.store.list_projects(organization)
            if not search_term or search_term.lower() in project.name.lower()
        ]
        return matching[offset : offset + limit], len(matching)
