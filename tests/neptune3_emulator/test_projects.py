"""Project metadata in the 3.x emulator, through the unmodified neptune-scale client: the key, visibility and
description given on create are stored and served back, a key another project of the workspace has is
refused, derived keys never collide, and data folders written before these columns existed stay readable."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators.neptune3.server import PROJECTS_PATH


def _entries(api_token: str) -> dict[str, dict[str, Any]]:
    """The project list as the client receives it, by qualified name."""
    from neptune_scale.net.projects import get_project_list

    return {f"{e['organizationName']}/{e['name']}": e for e in get_project_list(api_token=api_token)}


def _backend(api_token: str) -> Any:
    """The client's own authenticated HTTP client for the backend API (for answers its helpers hide)."""
    from neptune_scale.net.api_client import ApiClient

    return ApiClient(api_token=api_token).backend.get_httpx_client()


def test_key_visibility_and_description_are_stored_and_served(neptune3: Any, open_run: Any, store_view: Any) -> None:
    from neptune_scale.projects import create_project

    token = neptune3.info.api_token
    create_project("demo/keyed", key="KEYED7", visibility="pub", description="a described project", api_token=token)
    create_project("demo/plain-one", api_token=token)

    listed = _entries(token)
    assert {k: listed["demo/keyed"][k] for k in ("projectKey", "visibility", "description")} == {
        "projectKey": "KEYED7",
        "visibility": "pub",
        "description": "a described project",
    }
    # no key given: one derived from the name; no visibility or description: private and empty
    assert {k: listed["demo/plain-one"][k] for k in ("projectKey", "visibility", "description")} == {
        "projectKey": "PLAIN",
        "visibility": "priv",
        "description": "",
    }
    got = _backend(token).get(PROJECTS_PATH + "/get", params={"projectIdentifier": "demo/keyed"})
    assert got.status_code == 200
    # getProject answers a ProjectDTO (backend.json): the key, and neither visibility nor description
    assert got.json()["projectKey"] == "KEYED7" and not {"visibility", "description"} & set(got.json())
    missing = _backend(token).get(PROJECTS_PATH + "/get", params={"projectIdentifier": "demo/nothing"})
    assert missing.status_code == 404

    # the key is what prefixes the project's run ids
    run, callbacks = open_run(neptune3.info, project="demo/keyed", run_id="keyed-run")
    run.log_configs({"c": 1})
    run.close(timeout=60)
    assert callbacks.errors == []
    assert store_view.attributes(neptune3.db(), "keyed-run", project="demo/keyed")["sys/id"] == ("string", "KEYED7-1")


def test_a_taken_key_or_name_is_a_400_naming_which(neptune3: Any) -> None:
    """createProject documents only 400 with the Error model (backend.json); a taken key has errorType
    PROJECT_KEY_COLLISION, a taken name a validation error ERR_NOT_UNIQUE (what neptune 1.x reads from it)."""
    from neptune_scale.exceptions import NeptuneBadRequestError
    from neptune_scale.projects import create_project, list_projects

    token = neptune3.info.api_token
    create_project("demo/holder", key="TAKEN", api_token=token)

    # neptune-scale turns any 400 into NeptuneBadRequestError with the body's message
    with pytest.raises(NeptuneBadRequestError, match='key "TAKEN" already exists'):
        create_project("demo/second", key="TAKEN", fail_if_exists=True, api_token=token)
    assert "demo/second" not in list_projects(api_token=token)

    answer = _backend(token).post(
        PROJECTS_PATH, json={"name": "second", "organizationIdentifier": "demo", "projectKey": "TAKEN", "visibility": "priv"}
    )
    assert answer.status_code == 400
    assert (answer.json()["errorType"], answer.json()["key"]) == ("PROJECT_KEY_COLLISION", "TAKEN")

    # a taken name answers its own 400, also when the key would be free
    answer = _backend(token).post(
        PROJECTS_PATH, json={"name": "holder", "organizationIdentifier": "demo", "projectKey": "FREE1", "visibility": "priv"}
    )
    assert answer.status_code == 400 and "errorType" not in answer.json()
    codes = [e["errorCode"]["name"] for v in answer.json()["validationErrors"] for e in v["errors"]]
    assert codes == ["ERR_NOT_UNIQUE"]
    with pytest.raises(NeptuneBadRequestError, match="already exists"):
        create_project("demo/holder", api_token=token)  # even without fail_if_exists, as the real service has it

    create_project("demo/second", api_token=token)  # without the key it is created
    listed = _entries(token)
    assert listed["demo/holder"]["projectKey"] == "TAKEN"
    assert listed["demo/second"]["projectKey"] not in ("TAKEN", "")


def test_projects_are_looked_up_by_exact_name_and_listed_in_pages(neptune3: Any) -> None:
    from neptune_scale.projects import create_project

    token = neptune3.info.api_token
    for name in ("page-a", "page-b", "page-c", "xpage-d"):
        create_project(f"demo/{name}", api_token=token)
    backend = _backend(token)
    first = backend.get(PROJECTS_PATH, params={"searchTerm": "page-", "offset": 0, "limit": 2}).json()
    second = backend.get(PROJECTS_PATH, params={"searchTerm": "page-", "offset": 2, "limit": 2}).json()
    assert first["matchingItemCount"] == second["matchingItemCount"] == 4
    assert [e["name"] for e in first["entries"] + second["entries"]] == ["page-a", "page-b", "page-c", "xpage-d"]
    assert backend.get(PROJECTS_PATH + "/get", params={"projectIdentifier": "demo/page-b"}).json()["name"] == "page-b"
    assert backend.get(PROJECTS_PATH + "/get", params={"projectIdentifier": "demo/page"}).status_code == 404


def test_a_visibility_the_plan_refuses_is_visibility_restricted(tmp_path: Path) -> None:
    from nmig.emulators.neptune3 import serve_neptune3

    with serve_neptune3(allowed_visibilities=("priv", "workspace")) as info:
        answer = _backend(info.api_token).post(
            PROJECTS_PATH, json={"name": "open", "organizationIdentifier": "demo", "visibility": "pub"}
        )
        assert answer.status_code == 400
        body = answer.json()
        assert (body["errorType"], body["requestedValue"], body["allowedValues"]) == (
            "VISIBILITY_RESTRICTED", "pub", ["priv", "workspace"])


def test_derived_keys_do_not_collide(neptune3: Any) -> None:
    from neptune_scale.projects import create_project

    token = neptune3.info.api_token
    create_project("demo/mnist-a", api_token=token)
    create_project("demo/mnist-b", api_token=token)
    create_project("demo/other", key="MNIST3", api_token=token)
    create_project("demo/mnist-c", api_token=token)
    listed = _entries(token)
    assert [listed[f"demo/mnist-{s}"]["projectKey"] for s in "abc"] == ["MNIST", "MNIST2", "MNIST4"]


def test_invalid_key_visibility_or_description_is_a_clear_400(neptune3: Any) -> None:
    from neptune_scale.exceptions import NeptuneBadRequestError
    from neptune_scale.projects import create_project, list_projects

    token = neptune3.info.api_token
    with pytest.raises(NeptuneBadRequestError, match="key"):
        create_project("demo/lower", key="lower", api_token=token)
    with pytest.raises(NeptuneBadRequestError, match="key"):
        create_project("demo/digits", key="1234", api_token=token)
    with pytest.raises(NeptuneBadRequestError, match="key"):
        create_project("demo/long", key="ABCDEFGHIJK", api_token=token)
    with pytest.raises(NeptuneBadRequestError, match="description"):
        create_project("demo/wordy", description="x" * 5000, api_token=token)
    answer = _backend(token).post(PROJECTS_PATH, json={"name": "vis", "organizationIdentifier": "demo", "visibility": "secret"})
    assert answer.status_code == 400 and "visibility" in answer.json()["message"]
    assert not {"demo/lower", "demo/digits", "demo/long", "demo/wordy", "demo/vis"} & set(list_projects(api_token=token))


# The projects table as data folders written before project metadata held it.
_OLD_PROJECTS_TABLE = """
CREATE TABLE projects (
    project_pk INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    next_run_number INTEGER NOT NULL DEFAULT 1,
    UNIQUE (workspace, name)
);
INSERT INTO projects (workspace, name, key, created_ms) VALUES ('demo', 'old', 'OLD', 1);
"""


def test_a_data_folder_from_before_keeps_working_and_metadata_survives_a_restart(tmp_path: Path) -> None:
    from neptune_scale.projects import create_project

    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.emulators.neptune3.store import DB_FILE

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with sqlite3.connect(data_dir / DB_FILE) as db:
        db.executescript(_OLD_PROJECTS_TABLE)

    with serve_neptune3(data_dir=data_dir) as info:
        listed = _entries(info.api_token)
        assert {k: listed["demo/old"][k] for k in ("projectKey", "visibility", "description")} == {
            "projectKey": "OLD",
            "visibility": "priv",
            "description": "",
        }
        create_project("demo/new", key="NEW", visibility="workspace", description="kept", api_token=info.api_token)
    with serve_neptune3(data_dir=data_dir) as info:
        listed = _entries(info.api_token)
        assert listed["demo/old"]["projectKey"] == "OLD"
        assert {k: listed["demo/new"][k] for k in ("projectKey", "visibility", "description")} == {
            "projectKey": "NEW",
            "visibility": "workspace",
            "description": "kept",
        }
