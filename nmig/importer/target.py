"""What nmig asks the 3.x service before writing: the project (created when missing) and, for a resumed run,
what the target already holds (read through neptune-query, the same client users read 3.x with)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from nmig.errors import NmigError
from nmig.importer.limits import step_micros
from nmig.importer.plan import RunPlan
from nmig.importer.replay import ResumePoint

_QUERY_LOCK = threading.Lock()  # neptune-query keeps a process-wide context: one query at a time


def _client_error_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


def require_api_token(api_token: str | None, what: str = "API token") -> str:
    """The 3.x API token, stripped; NmigError when it is missing or not shaped like a Neptune API token."""
    from nmig.secrets import api_address

    if not api_token or not api_token.strip():
        raise NmigError(f"no {what}: pass --api-token or set NEPTUNE_API_TOKEN")
    if api_address(api_token) is None:
        raise NmigError(f"the {what} is malformed (not a Neptune API token)")
    return api_token.strip()


def check_token(api_token: str) -> None:
    """One cheap authenticated call (a one-entry page of listProjects), so a bad token or an unreachable
    service is found before anything is read or written; NmigError with one clear line otherwise."""
    response = _request(backend_http(api_token), "get", "", params={"limit": 1})
    if response.status_code in (401, 403):
        raise NmigError(f"the 3.x service refused the API token (HTTP {response.status_code})")
    if response.status_code // 100 != 2:
        raise NmigError(f"the 3.x service could not be asked for projects: HTTP {response.status_code}")


# The visibilities a 3.x project can have (backend.json ProjectVisibilityDTO), by the names `--visibility`
# takes: the words users know, and the enum's own values.
VISIBILITY_CHOICES = {"private": "priv", "public": "pub", "workspace": "workspace", "priv": "priv", "pub": "pub"}
_PROJECTS_PATH = "/api/backend/v1/projects"


def legacy_visibility(value: object) -> str:
    """The 3.x visibility ("priv" | "pub" | "workspace") of a legacy project's visibility."""
    text = str(value or "").lower()
    if text.startswith("pub"):
        return "pub"
    if text.startswith("work"):
        return "workspace"
    return "priv"


@dataclass
class ProjectOutcome:
    project: str
    created: bool
    key_dropped: str | None = None  # the legacy key, when it was taken and the project was created without it
    message: str = ""


def backend_http(api_token: str) -> Any:
    """neptune-scale's own authenticated HTTP client of the backend API (what its create_project and
    get_project_list use, neptune_scale/net/projects.py 68 and 102): nmig calls the two project endpoints
    through it because create_project keeps only an error's message (net/projects.py 81-82), and the answer
    tells a taken name, a taken key, an invalid key and a refused visibility apart only by its body."""
    from neptune_scale.net.api_client import ApiClient

    from nmig.importer.client import fit_client, share_client_config

    share_client_config()
    try:
        return fit_client(ApiClient(api_token=api_token).backend).get_httpx_client()
    except Exception as exc:  # neptune-scale, neptune-api and httpx each raise their own kinds here
        raise NmigError(f"the 3.x service refused the API token or could not be reached: {_client_error_line(exc)}") from None


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _request(http: Any, method: str, what: str, **kwargs: Any) -> Any:
    try:
        return http.request(method, _PROJECTS_PATH + what, **kwargs)
    except Exception as exc:
        # the token is exchanged on the first request, so a refused token surfaces here
        raise NmigError(f"the 3.x service refused the API token or could not be reached: {_client_error_line(exc)}") from None


def find_project(http: Any, project: str) -> dict[str, Any] | None:
    """The project named exactly `project` ("workspace/name"; backend.json getProject), None when it does
    not exist. Refused access is an NmigError."""
    response = _request(http, "get", "/get", params={"projectIdentifier": project})
    if response.status_code == 200:
        return _json(response)
    if response.status_code == 404:
        return None
    if response.status_code in (401, 403):
        raise NmigError(f"the 3.x service refused access to project {project} (HTTP {response.status_code})")
    reason = _json(response).get("message") or response.text[:200]
    raise NmigError(f"could not look project {project} up: HTTP {response.status_code}: {' '.join(str(reason).split())}")


def _refusal(response: Any) -> tuple[str, dict[str, Any]]:
    """What a refused createProject was about: "name_taken", "key_taken", "key_invalid", "visibility",
    "workspace" or "other"; with the answer's JSON body."""
    body = _json(response)
    validation = body.get("validationErrors")
    codes = {
        str((error.get("errorCode") or {}).get("name"))
        for item in (validation if isinstance(validation, list) else [])
        if isinstance(item, dict)
        for error in (item.get("errors") or [])
        if isinstance(error, dict)
    }
    kinds = {"PROJECT_KEY_COLLISION": "key_taken", "PROJECT_KEY_INVALID": "key_invalid",
             "PROJECT_NAME_COLLISION": "name_taken", "VISIBILITY_RESTRICTED": "visibility"}
    if body.get("errorType") in kinds:
        return kinds[str(body["errorType"])], body
    if "ERR_NOT_UNIQUE" in codes or response.status_code == 409:
        # 409: what neptune-scale expects for an existing project (net/projects.py 75), though createProject
        # documents only 400 (backend.json); taken as a taken name too.
        return "name_taken", body
    if response.status_code == 404 and "not found" in response.text.lower():
        return "workspace", body
    return "other", body


def ensure_project(
    project: str, api_token: str, source: dict[str, Any], create: bool, visibility: str | None = None
) -> ProjectOutcome:
    """Make sure `project` exists, created with the legacy key, visibility (or `visibility`, the
    --visibility override) and description; NmigError with one clear line for every refusal."""
    http = backend_http(api_token)
    workspace, name = project.split("/", 1)
    if find_project(http, project) is not None:
        return ProjectOutcome(project, created=False, message=f"project {project} exists; importing into it")
    if not create:
        raise NmigError(f"project {project} does not exist (and --no-create-project was given)")
    key = source.get("key") if isinstance(source.get("key"), str) and source.get("key") else None
    chosen = VISIBILITY_CHOICES[visibility] if visibility else legacy_visibility(source.get("visibility"))
    body: dict[str, Any] = {
        "name": name,
        "organizationIdentifier": workspace,
        "visibility": chosen,
        "description": source.get("description") if isinstance(source.get("description"), str) else None,
        "projectKey": key,
    }
    key_dropped: str | None = None
    why_dropped = ""
    while True:
        response = _request(http, "post", "", json=body)
        if response.status_code // 100 == 2:
            break
        kind, answer = _refusal(response)
        reason = " ".join(str(answer.get("message") or response.text[:200]).split())
        if kind == "name_taken" and find_project(http, project) is not None:
            return ProjectOutcome(project, created=False, message=f"project {project} was created meanwhile; importing into it")
        if kind in ("key_taken", "key_invalid") and body["projectKey"] is not None:
            # nmig creates the project without the key and says so (the one-shot copier ends up with none)
            key_dropped, body["projectKey"] = key, None
            why_dropped = f"that key is taken in workspace {workspace}" if kind == "key_taken" else f"the service refused it: {reason}"
            continue
        if kind == "visibility":
            allowed = answer.get("allowedValues")
            allowed_text = ", ".join(map(str, allowed)) if isinstance(allowed, list) else "see the workspace's plan"
            raise NmigError(
                f"the 3.x workspace {workspace} does not allow {chosen!r} projects (allowed: {allowed_text}); "
                "pass --visibility private|workspace|public"
            )
        if kind == "workspace":
            raise NmigError(f"workspace {workspace!r} does not exist on the 3.x service")
        raise NmigError(f"could not create project {project}: HTTP {response.status_code}: {reason}")
    if key_dropped is not None:
        return ProjectOutcome(
            project,
            created=True,
            key_dropped=key_dropped,
            message=f"created project {project} WITHOUT the legacy key {key_dropped!r}: {why_dropped}",
        )
    return ProjectOutcome(project, created=True, message=f"created project {project}" + (f" with key {key}" if key else ""))


@contextmanager
def _reading(api_token: str) -> Iterator[Any]:
    """neptune-query's runs API reading with `api_token`, under the lock its module-wide token needs. Its
    clients get nmig's quick retries from the first read on; neptune-query is imported only here, so an
    import into a new project, which never reads, does not pay for it (about 0.5 s of CPU)."""
    import neptune_query
    from neptune_query import runs as nq_runs

    from nmig.importer.client import retry_query_answers_quickly

    retry_query_answers_quickly()
    with _QUERY_LOCK:
        neptune_query.set_api_token(api_token)
        yield nq_runs


def existing_run_ids(project: str, api_token: str) -> set[str]:
    with _reading(api_token) as nq_runs:
        return set(nq_runs.list_runs(project=project))


def _last_steps(frame: Any, targets: list[str]) -> tuple[dict[str, float], list[str]]:
    """Per column, the step of its last present value; columns whose tail value is missing or NaN (a NaN
    metric point looks like no point in a wide table) are returned for a one-by-one query."""
    found: dict[str, float] = {}
    unclear: list[str] = []
    if frame is None or len(frame) == 0:
        return found, []
    flat = frame.reset_index()
    if "step" not in flat.columns:
        return found, list(targets)
    for target in targets:
        if target not in flat.columns:
            continue
        column = flat[target]
        if getattr(column, "ndim", 1) != 1:  # sub-columns (value/absolute_time): take the value one
            column = column.iloc[:, 0]
        present = column.notna()
        if present.any():
            found[target] = float(flat.loc[present, "step"].max())
        else:
            unclear.append(target)
    return found, unclear


def resume_point(project: str, api_token: str, plan: RunPlan) -> ResumePoint:
    """The last step of every series of `plan` the target run already holds (none for a new run).

    Assumptions about the real service (the emulator behaves so): a series' points are stored in the order
    their requests were accepted and a point is never stored after a later one of the same series, so what
    the target holds is a prefix of what was sent and its last step marks where to continue. A request the
    service accepted but had not yet processed when the previous import was killed may still land after this
    read; its points are then sent again and rejected as not increasing (never stored twice), which the
    replay forgives once the series ends where the bundle's does (RunReplayer._forgive_rejected_duplicates).
    """

    return ResumePoint(last_steps(project, api_token, plan, [item.target for item in plan.series]))


def last_steps(project: str, api_token: str, plan: RunPlan, targets: list[str]) -> dict[str, int]:
    """The last step (micro-units) the target run holds for each of the given series (3.x paths)."""
    wanted = set(targets)
    last: dict[str, int] = {}
    by_kind: dict[str, list[str]] = {}
    for item in plan.series:
        if item.target in wanted:
            by_kind.setdefault(item.kind, []).append(item.target)
    with _reading(api_token) as nq_runs:
        for kind, paths in by_kind.items():
            fetch = nq_runs.fetch_metrics if kind == "float" else nq_runs.fetch_series
            common = {"project": project, "runs": [plan.target_run_id], "tail_limit": 1, "lineage_to_the_root": False}
            try:
                frame = fetch(attributes=paths, **common)
            except Exception as exc:
                raise NmigError(f"could not read run {plan.target_run_id!r} back: {_client_error_line(exc)}") from None
            found, unclear = _last_steps(frame, paths)
            for target in unclear:
                single = fetch(attributes=[target], **common)
                flat = single.reset_index() if single is not None else None
                if flat is not None and len(flat) and "step" in flat.columns:
                    found[target] = float(flat["step"].max())
            for target, step in found.items():
                last[target] = int(step_micros([step])[0])
    return last


def _same(expected: Any, actual: Any) -> bool:
    import datetime as dt
    import math

    if hasattr(expected, "size_bytes") and hasattr(expected, "mime_type"):  # a FileRef: the same stored file
        return getattr(actual, "path", None) == expected.path and getattr(actual, "size_bytes", None) == expected.size_bytes

    if isinstance(expected, float) and isinstance(actual, float) and math.isnan(expected) and math.isnan(actual):
        return True
    if isinstance(expected, list):
        return isinstance(actual, (set, list, frozenset)) and set(actual) == set(expected)
    if isinstance(expected, dt.datetime):
        from nmig.importer.wire import datetime_ms, nearest_ms

        actual = actual.to_pydatetime() if hasattr(actual, "to_pydatetime") else actual
        return isinstance(actual, dt.datetime) and datetime_ms(expected) == nearest_ms(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(expected) is type(actual) and expected == actual
    try:
        return bool(expected == actual)
    except (TypeError, ValueError):
        return False


def items_not_as_sent(project: str, api_token: str, run_id: str, expected: dict[str, Any]) -> list[str] | None:
    """Which of `expected` items (configs, tag sets, file references by path) the target does not hold as
    sent, read back with neptune-query: what a rejected request took with it (the service names no attribute
    in a request status). None when the read-back itself fails."""
    try:
        with _reading(api_token) as nq_runs:
            frame = nq_runs.fetch_runs_table(project=project, runs=[run_id], attributes=list(expected))
    except Exception:
        return None
    if frame is None or len(frame) == 0:
        return list(expected)
    row = frame.iloc[0]
    return [path for path, value in expected.items() if path not in row.index or not _same(value, row[path])]


# retrieval.json trashExperiments: POST, a JSON list of experiment identifiers, ?projectIdentifier=; answers
# BulkOpResultDTO {updatedExperimentIdentifiers, errors: [BulkOpErrorDTO {experimentIdentifier, message,
# reason}]}. None of the clients calls it, so it goes through neptune-scale's authenticated HTTP client.
_TRASH_PATH = "/api/leaderboard/v1/experiments/trash"


def trash_run(project: str, api_token: str, run_id: str) -> str | None:
    """Move a run to the 3.x project's trash (`--sync-trash`); None when done (or it was there already), else
    why not, in one line. 3.x's clients have no way to delete a run; the service's trash is the nearest.

    ASSUMPTION: the endpoint takes the run as the read API names it, `workspace/project/SYS-ID` with the 3.x
    sys/id (the spec says only "Same format as sent in request"), found here with neptune-query."""
    try:
        with _reading(api_token) as nq_runs:
            frame = nq_runs.fetch_runs_table(project=project, runs=[run_id], attributes=["sys/id"])
    except Exception as exc:
        return f"could not look the run up: {_client_error_line(exc)}"
    if frame is None or len(frame) == 0 or "sys/id" not in frame.columns:
        return None  # not listed: in the trash already (or never created)
    identifier = f"{project}/{frame['sys/id'].iloc[0]}"
    try:
        response = backend_http(api_token).request("post", _TRASH_PATH, params={"projectIdentifier": project}, json=[identifier])
    except NmigError as exc:
        return str(exc)
    except Exception as exc:
        return f"the trash request failed: {_client_error_line(exc)}"
    if response.status_code // 100 != 2:
        return f"HTTP {response.status_code}"
    errors = _json_list(response, "errors")
    problems = [e for e in errors if isinstance(e, dict) and e.get("reason") != "ALREADY_TRASHED"]
    if problems:
        return f"{problems[0].get('reason')}: {' '.join(str(problems[0].get('message') or '').split())[:200]}"
    return None


def _json_list(response: Any, key: str) -> list[Any]:
    value = _json(response).get(key)
    return value if isinstance(value, list) else []
