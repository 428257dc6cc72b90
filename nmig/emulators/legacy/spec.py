"""The Swagger 2.0 specs the legacy emulator serves: the operations it implements, as the real API has them.

The `neptune` client downloads three specs at start-up (backend, leaderboard, artifacts) and calls operations
by `operationId` through bravado, reading results by attribute; so every operation is tagged `api` and every
JSON response is a `$ref` to a model. Operation ids, methods, paths, parameter names and types and the
models' names, fields and types are those of Neptune's published specs (neptune-api: backend.json,
leaderboard.json of 2025-05 and leaderboard_swagger.json of 2024; the facts are extracted into
tests/conformance/legacy_contract.json, and tests/conformance/test_legacy_conformance.py holds this file to
them). Each model declares only the fields the emulator sends; the few items no snapshot has are there
because a 2.x client sends or reads them, each with its evidence next to it (and listed in the test).
No `host` or `schemes` are given, so bravado serves the API from wherever it fetched the spec.

Two API variants (`SeriesPaging`), because the evidence disagrees: both snapshots page float series by
`skipToStep` and have `maxSingleValueLength` on string series, while the released neptune 1.14 client pages
2.x float series by `offset` (neptune/internal/backends/hosted_neptune_backend.py:1009), so the 2.x servers
it was built for declared `offset`. A client must follow the spec the server serves.
"""

from __future__ import annotations

from typing import Any, Literal

from nmig.emulators.http import OAUTH_TOKEN_PATH

BACKEND_SPEC_PATH = "/api/backend/swagger.json"
LEADERBOARD_SPEC_PATH = "/api/leaderboard/swagger.json"
ARTIFACTS_SPEC_PATH = "/api/artifacts/swagger.json"

# "offset": float series paged by offset/limit, as neptune 1.14 sends them (the 2.x era; the default, and
# what the client's own fetch_values() needs). "skipToStep": as both published snapshots declare it.
SeriesPaging = Literal["offset", "skipToStep"]
SERIES_PAGINGS: tuple[str, ...] = ("offset", "skipToStep")

# The single-attribute getters: `get<Type>Attribute` at `/attributes/<plural>` (both leaderboard snapshots),
# answering `<Type>AttributeDTO`. operationId -> attribute type; the server answers them all with one handler.
_GETTER_PATHS = {
    "float": "floats",
    "int": "integers",
    "bool": "booleans",
    "string": "strings",
    "datetime": "datetimes",
    "file": "files",
    "stringSet": "stringSets",
    "floatSeries": "floatSeries",
    "stringSeries": "stringSeries",
    "artifact": "artifacts",  # leaderboard_swagger_2024.json only (the 2025 snapshot dropped it)
}
ATTRIBUTE_GETTERS: dict[str, str] = {f"get{kind[0].upper()}{kind[1:]}Attribute": kind for kind in _GETTER_PATHS}

_LB = "/api/leaderboard/v1"
# operationId -> (method, path); the server routes on the same table, so spec and server cannot drift apart.
BACKEND_OPERATIONS: dict[str, tuple[str, str]] = {
    "getClientConfig": ("GET", "/api/backend/v1/clients/config"),
    "exchangeApiToken": ("GET", OAUTH_TOKEN_PATH),
    "listProjects": ("GET", "/api/backend/v1/projects"),
    "getProject": ("GET", "/api/backend/v1/projects/get"),
    "getProjectDetails": ("GET", "/api/backend/v1/projects/details"),
    "listOrganizations": ("GET", "/api/backend/v1/myOrganizations"),
}
LEADERBOARD_OPERATIONS: dict[str, tuple[str, str]] = {
    "getExperiment": ("GET", f"{_LB}/experiments"),
    "getExperimentAttributes": ("GET", f"{_LB}/attributes"),
    **{op: ("GET", f"{_LB}/attributes/{_GETTER_PATHS[kind]}") for op, kind in ATTRIBUTE_GETTERS.items()},
    "getFloatSeriesValues": ("GET", f"{_LB}/attributes/series/float"),
    "getStringSeriesValues": ("GET", f"{_LB}/attributes/series/string"),
    "getImageSeriesValues": ("GET", f"{_LB}/attributes/series/image"),
    "getImageSeriesValue": ("GET", f"{_LB}/attributes/series/image/single"),
    "getChannelValues": ("GET", f"{_LB}/channels/{{channelId}}/values"),
    "downloadAttribute": ("GET", f"{_LB}/attributes/download"),
    "lsFileSetAttribute": ("GET", f"{_LB}/attributes/ls"),
    "prepareForDownloadFileSetAttributeZip": ("POST", f"{_LB}/attributes/downloadFileSetZipRequest"),
    "getDownloadPrepareRequest": ("GET", f"{_LB}/download/downloadRequest"),
    "searchLeaderboardAttributes": ("POST", f"{_LB}/leaderboard/attributes/search"),
    "searchLeaderboardEntries": ("POST", f"{_LB}/leaderboard/entries/search"),
}
# No published snapshot has the artifacts API; the client calls it by this id from the spec at
# ARTIFACTS_SPEC_PATH (neptune/internal/backends/hosted_client.py:55, hosted_artifact_operations.py:285).
# ASSUMPTION: its path (the client only knows the operation id). No evidence.
ARTIFACTS_OPERATIONS: dict[str, tuple[str, str]] = {
    "listArtifactFiles": ("GET", "/api/artifacts/v1/files"),
}
# Not an operation: the URL a prepared FileSet zip is fetched from (handed out as DownloadPrepareRequest's
# `downloadUrl`, which the client GETs with its own session: hosted_file_operations._get_download_url).
# ASSUMPTION: the real service's URL shape (the client takes it as given). No evidence.
ZIP_DOWNLOAD_PATH = "/api/leaderboard/v1/download/zip"


def _query(name: str, kind: str = "string", required: bool = False, fmt: str | None = None) -> dict[str, Any]:
    param = {"name": name, "in": "query", "type": kind, "required": required}
    if fmt:
        param["format"] = fmt
    return param


def _query_list(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "type": "array",
        "items": {"type": "string"},
        "collectionFormat": "multi",
    }


def _header(name: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "header", "type": "string", "required": required}


def _body(name: str, model: str) -> dict[str, Any]:
    return {"name": name, "in": "body", "required": True, "schema": {"$ref": f"#/definitions/{model}"}}


_EXPERIMENT_ATTRIBUTE = [_query("experimentId"), _query("attribute", required=True)]
_LIMIT = _query("limit", "integer", fmt="int32")
_OFFSET = _query("offset", "integer", fmt="int32")
_PAGE = [_LIMIT, _OFFSET]
_PROJECT = [_query("projectIdentifier", required=True)]


def _signatures(paging: SeriesPaging) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """operationId -> (parameters, 200 response schema)."""
    if paging == "offset":
        # `offset`: no snapshot has it here; neptune 1.14 sends it (hosted_neptune_backend.py:1009).
        float_page = [_LIMIT, _OFFSET]
        string_page = _PAGE
    else:
        float_page = [_LIMIT, _query("skipToStep", "number", fmt="double")]
        string_page = [*_PAGE, _query("maxSingleValueLength", "integer", fmt="int32")]
    return {
        "getClientConfig": (
            [_header("X-Neptune-Api-Token"), _query("alpha")],
            {"$ref": "#/definitions/ClientConfig"},
        ),
        "exchangeApiToken": (
            [_header("X-Neptune-Api-Token", required=True)],
            {"$ref": "#/definitions/NeptuneOauthToken"},
        ),
        "listProjects": (
            [
                _LIMIT,
                _OFFSET,
                _query("organizationIdentifier"),
                _query("searchTerm"),
                _query_list("sortBy"),
                _query_list("sortDirection"),
                _query("userRelation"),
            ],
            {"$ref": "#/definitions/ProjectListDTO"},
        ),
        "getProject": (_PROJECT, {"$ref": "#/definitions/ProjectDTO"}),
        "getProjectDetails": (_PROJECT, {"$ref": "#/definitions/ProjectWithRoleDTO"}),
        "listOrganizations": ([], {"type": "array", "items": {"$ref": "#/definitions/OrganizationWithRoleDTO"}}),
        "getExperiment": ([_query("experimentId", required=True)], {"$ref": "#/definitions/Experiment"}),
        "getExperimentAttributes": (
            [_query("experimentId", required=True)],
            {"$ref": "#/definitions/ExperimentAttributesDTO"},
        ),
        # get<Type>Attribute answers the <Type>AttributeDTO model (the operationId minus its "get").
        **{op: (_EXPERIMENT_ATTRIBUTE, {"$ref": f"#/definitions/{op[3:]}DTO"}) for op in ATTRIBUTE_GETTERS},
        "getFloatSeriesValues": (_EXPERIMENT_ATTRIBUTE + float_page, {"$ref": "#/definitions/FloatSeriesValuesDTO"}),
        "getStringSeriesValues": (
            _EXPERIMENT_ATTRIBUTE + string_page,
            {"$ref": "#/definitions/StringSeriesValuesDTO"},
        ),
        "getImageSeriesValues": (_EXPERIMENT_ATTRIBUTE + _PAGE, {"$ref": "#/definitions/ImageSeriesValuesDTO"}),
        "getImageSeriesValue": (
            _EXPERIMENT_ATTRIBUTE + [_query("index", "integer", True, "int32")],
            {"type": "file"},
        ),
        "getChannelValues": (
            [{"name": "channelId", "in": "path", "type": "string", "format": "uuid", "required": True}, *_PAGE],
            {"$ref": "#/definitions/LimitedChannelValuesDTO"},
        ),
        "downloadAttribute": (_EXPERIMENT_ATTRIBUTE, {"type": "file"}),
        "lsFileSetAttribute": (
            _EXPERIMENT_ATTRIBUTE + [_query("path", required=True)],
            {"type": "array", "items": {"$ref": "#/definitions/FileEntry"}},
        ),
        "prepareForDownloadFileSetAttributeZip": (
            _EXPERIMENT_ATTRIBUTE,
            {"$ref": "#/definitions/DownloadPrepareRequest"},
        ),
        "getDownloadPrepareRequest": (
            [_query("id", required=True, fmt="uuid")],
            {"$ref": "#/definitions/DownloadPrepareRequest"},
        ),
        "searchLeaderboardAttributes": (
            [*_PROJECT, _query("search"), _query_list("type"), _body("params", "SearchLeaderboardParamsDTO")],
            {"$ref": "#/definitions/AttributesSearchResultDTO"},
        ),
        "searchLeaderboardEntries": (
            [*_PROJECT, _query_list("type"), _body("params", "SearchLeaderboardEntriesParamsDTO")],
            {"$ref": "#/definitions/LeaderboardEntriesSearchResultDTO"},
        ),
        "listArtifactFiles": (
            [*_PROJECT, _query("hash", required=True)],
            {"$ref": "#/definitions/ArtifactFiles"},
        ),
    }


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


_S = {"type": "string"}
_UUID = {"type": "string", "format": "uuid"}
_I32 = {"type": "integer", "format": "int32"}
_I64 = {"type": "integer", "format": "int64"}
_F = {"type": "number", "format": "double"}
_B = {"type": "boolean"}
_DT = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": _S}
_FREE = {"type": "object"}  # a request body member the emulator reads as a raw dict


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


def _attribute_dto(**value: Any) -> dict[str, Any]:
    return _obj(attributeName=_S, attributeType=_S, **value)


_DEFINITIONS: dict[str, dict[str, Any]] = {
    "ClientConfig": _obj(
        apiUrl=_S,
        applicationUrl=_S,
        pyLibVersions=_ref("ClientVersionsConfigDTO"),
        # The next three are in no snapshot's ClientConfig; neptune 1.14 reads them with defaults
        # (neptune/internal/backends/api_model.py:153, :167, :177).
        multiPartUpload=_ref("MultiPartUpload"),
        artifacts=_ref("ArtifactsConfig"),
        sysNameSetByBackend=_B,
    ),
    "NeptuneOauthToken": _obj(accessToken=_S, refreshToken=_S, username=_S),
    # getProject's model has no visibility or description (backend.json ProjectDTO); getProjectDetails' has.
    "ProjectDTO": _obj(id=_UUID, name=_S, organizationName=_S, organizationId=_UUID, projectKey=_S, version=_I32),
    "ProjectWithRoleDTO": _obj(
        id=_UUID,
        name=_S,
        organizationName=_S,
        organizationId=_UUID,
        projectKey=_S,
        version=_I32,
        visibility=_S,  # ProjectVisibilityDTO: "priv" | "pub" | "workspace"
        description=_S,
    ),
    "ProjectListDTO": _obj(entries=_list("ProjectWithRoleDTO"), matchingItemCount=_I32, totalItemCount=_I32),
    "OrganizationWithRoleDTO": _obj(id=_UUID, name=_S),
    "Experiment": _obj(
        id=_UUID,
        type=_S,
        shortId=_S,
        organizationName=_S,
        organizationId=_UUID,
        projectName=_S,
        projectId=_UUID,
        trashed=_B,
    ),
    "AttributeDTO": _obj(
        name=_S,
        type=_S,
        floatProperties=_ref("FloatAttributeDTO"),
        intProperties=_ref("IntAttributeDTO"),
        boolProperties=_ref("BoolAttributeDTO"),
        stringProperties=_ref("StringAttributeDTO"),
        datetimeProperties=_ref("DatetimeAttributeDTO"),
        experimentStateProperties=_ref("ExperimentStateAttributeDTO"),
        notebookRefProperties=_ref("NotebookRefAttributeDTO"),
        gitRefProperties=_ref("GitInfoDTO"),
        fileProperties=_ref("FileAttributeDTO"),
        fileSetProperties=_ref("FileSetAttributeDTO"),
        imageSeriesProperties=_ref("ImageSeriesAttributeDTO"),
        floatSeriesProperties=_ref("FloatSeriesAttributeDTO"),
        stringSeriesProperties=_ref("StringSeriesAttributeDTO"),
        stringSetProperties=_ref("StringSetAttributeDTO"),
        artifactProperties=_ref("ArtifactAttributeDTO"),  # leaderboard_swagger_2024.json only
    ),
    "ExperimentAttributesDTO": _obj(attributes=_list("AttributeDTO")),
    "ClientVersionsConfigDTO": _obj(minRecommendedVersion=_S, minCompatibleVersion=_S, maxCompatibleVersion=_S),
    "MultiPartUpload": _obj(enabled=_B),
    "ArtifactsConfig": _obj(enabled=_B, apiVersion=_I32),
    "GitCommitDTO": _obj(commitId=_S, message=_S, authorName=_S, authorEmail=_S, commitDate=_DT),
    "GitInfoDTO": _attribute_dto(commit=_ref("GitCommitDTO"), currentBranch=_S, remotes=_STRINGS, repositoryDirty=_B),
    # `value` is in no snapshot's NotebookRefAttributeDTO and never sent, but declared: the client's generic
    # namespace fetch reads `.value` of notebookRef properties (neptune/internal/utils/
    # generic_attribute_mapper.py:36 with :66) and would fail on an undeclared field.
    "NotebookRefAttributeDTO": _attribute_dto(
        notebookId=_UUID, notebookName=_S, checkpointId=_UUID, checkpointName=_S, value=_S
    ),
    "ExperimentStateAttributeDTO": _attribute_dto(value=_S),
    "FileSetAttributeDTO": _attribute_dto(size=_I64),
    "ImageSeriesAttributeDTO": _attribute_dto(channelId=_UUID, lastStep=_F),
    "FloatAttributeDTO": _attribute_dto(value=_F),
    "IntAttributeDTO": _attribute_dto(value={"type": "integer"}),  # int64 in 2025, int32 in 2024
    "BoolAttributeDTO": _attribute_dto(value=_B),
    "StringAttributeDTO": _attribute_dto(value=_S),
    "DatetimeAttributeDTO": _attribute_dto(value=_DT),
    "FileAttributeDTO": _attribute_dto(name=_S, ext=_S, size=_I64),
    "StringSetAttributeDTO": _attribute_dto(values=_STRINGS),
    "FloatSeriesAttributeDTO": _attribute_dto(last=_F, lastStep=_F, min=_F, max=_F, average=_F, variance=_F),
    "StringSeriesAttributeDTO": _attribute_dto(last=_S, lastStep=_F),
    "ArtifactAttributeDTO": _attribute_dto(hash=_S),
    "FloatPointValueDTO": _obj(step=_F, timestampMillis=_I64, value=_F),
    "FloatSeriesValuesDTO": _obj(totalItemCount=_I32, values=_list("FloatPointValueDTO")),
    "StringPointValueDTO": _obj(step=_F, timestampMillis=_I64, value=_S),
    "StringSeriesValuesDTO": _obj(totalItemCount=_I32, values=_list("StringPointValueDTO")),
    # Only the count: names, descriptions and steps of an image series are values of its channel.
    "ImageSeriesValuesDTO": _obj(totalItemCount=_I32),
    "OutputImageDTO": _obj(name=_S, description=_S),
    "YOutput": _obj(imageValue=_ref("OutputImageDTO"), numericValue=_F, textValue=_S),
    "PointValueDTO": _obj(timestampMillis=_I64, x=_F, y=_ref("YOutput")),
    "LimitedChannelValuesDTO": _obj(channelId=_UUID, totalItemCount=_I32, values=_list("PointValueDTO")),
    "FileEntry": _obj(name=_S, size=_I64, mtime=_DT, fileType=_S),
    "DownloadPrepareRequest": _obj(id=_UUID, downloadUrl=_S),
    "SearchLeaderboardParamsDTO": _obj(query=_FREE),
    "SearchLeaderboardEntriesParamsDTO": _obj(
        attributeFilters={"type": "array", "items": _FREE}, pagination=_FREE, query=_FREE, sorting=_FREE
    ),
    "AttributeDefinitionDTO": _obj(name=_S, type=_S),
    "AttributesSearchResultDTO": _obj(entries=_list("AttributeDefinitionDTO")),
    # Entries are AttributesDTO; the client reads them as raw dicts, so the emulator declares them free-form.
    "LeaderboardEntriesSearchResultDTO": _obj(
        matchingItemCount=_I64, totalGroupCount=_I64, entries={"type": "array", "items": _FREE}
    ),
    # The artifacts API: in no snapshot; the fields neptune 1.14 reads (hosted_artifact_operations.py:285-290
    # builds ArtifactFileData from filePath, fileHash, type, size, metadata).
    "ArtifactFileMetadata": _obj(key=_S, value=_S),
    "ArtifactFile": _obj(filePath=_S, fileHash=_S, type=_S, size=_I64, metadata=_list("ArtifactFileMetadata")),
    "ArtifactFiles": _obj(files=_list("ArtifactFile")),
}

# The 2025 snapshot (the one with skipToStep) has no getArtifactAttribute: a server serving it lacks the
# operation, and a client must cope (the exporter reports artifact attributes as not readable there).
OPERATIONS_ABSENT_WITH: dict[str, frozenset[str]] = {
    "offset": frozenset(),
    "skipToStep": frozenset({"getArtifactAttribute"}),
}


def build_spec(
    title: str,
    operations: dict[str, tuple[str, str]],
    paging: SeriesPaging = "offset",
    absent: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    signatures = _signatures(paging)
    paths: dict[str, dict[str, Any]] = {}
    for operation_id, (method, path) in operations.items():
        if operation_id in absent:
            continue
        parameters, schema = signatures[operation_id]
        produces = ["*/*"] if schema.get("type") == "file" else ["application/json"]
        paths.setdefault(path, {})[method.lower()] = {
            "tags": ["api"],
            "operationId": operation_id,
            "produces": produces,
            "parameters": parameters,
            "responses": {"200": {"description": "OK", "schema": schema}},
        }
    return {
        "swagger": "2.0",
        "info": {"title": f"nmig legacy emulator: {title}", "version": "2.0"},
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": paths,
        "definitions": _DEFINITIONS,
    }


def build_specs(paging: SeriesPaging = "offset", absent: frozenset[str] = frozenset()) -> dict[str, dict[str, Any]]:
    """Spec URL -> the spec served there, for one API variant; `absent`: operations this server lacks."""
    absent = absent | OPERATIONS_ABSENT_WITH[paging]
    return {
        BACKEND_SPEC_PATH: build_spec("backend", BACKEND_OPERATIONS, paging, absent),
        LEADERBOARD_SPEC_PATH: build_spec("leaderboard", LEADERBOARD_OPERATIONS, paging, absent),
        ARTIFACTS_SPEC_PATH: build_spec("artifacts", ARTIFACTS_OPERATIONS, paging, absent),
    }
