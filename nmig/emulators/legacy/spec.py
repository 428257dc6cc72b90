"""The Swagger 2.0 specs the legacy emulator serves: written here, covering exactly the operations it implements.

The `neptune` client downloads three specs at start-up (backend, leaderboard, artifacts) and calls operations
by `operationId` through bravado, reading results by attribute; so every operation is tagged `api` and every
JSON response is a `$ref` to a model. Paths are our own choice (the client only hard-codes the spec URLs).
No `host` or `schemes` are given, so bravado serves the API from wherever it fetched the spec.
"""

from __future__ import annotations

from typing import Any

from nmig.emulators.http import OAUTH_TOKEN_PATH

BACKEND_SPEC_PATH = "/api/backend/swagger.json"
LEADERBOARD_SPEC_PATH = "/api/leaderboard/swagger.json"
ARTIFACTS_SPEC_PATH = "/api/artifacts/swagger.json"

# The single-attribute getters, one per attribute type and all alike: `get<Type>Attribute` at
# `.../attributes/<type>`, answering the `<Type>Attribute` model. operationId -> attribute type; the server
# answers them all with one handler.
ATTRIBUTE_GETTERS: dict[str, str] = {
    f"get{kind[0].upper()}{kind[1:]}Attribute": kind
    for kind in (
        "float", "int", "bool", "string", "datetime", "file", "stringSet", "floatSeries", "stringSeries", "artifact"
    )
}

# operationId -> (method, path); the server routes on the same table, so spec and server cannot drift apart.
BACKEND_OPERATIONS: dict[str, tuple[str, str]] = {
    "getClientConfig": ("GET", "/api/backend/v1/clients/config"),
    "exchangeApiToken": ("GET", OAUTH_TOKEN_PATH),
    "listProjects": ("GET", "/api/backend/v1/projects"),
    "getProject": ("GET", "/api/backend/v1/projects/get"),
    "listOrganizations": ("GET", "/api/backend/v1/myOrganizations"),
}
LEADERBOARD_OPERATIONS: dict[str, tuple[str, str]] = {
    "getExperiment": ("GET", "/api/leaderboard/v1/experiments"),
    "getExperimentAttributes": ("GET", "/api/leaderboard/v1/attributes"),
    **{op: ("GET", f"/api/leaderboard/v1/attributes/{kind}") for op, kind in ATTRIBUTE_GETTERS.items()},
    "getFloatSeriesValues": ("GET", "/api/leaderboard/v1/attributes/series/float"),
    "getStringSeriesValues": ("GET", "/api/leaderboard/v1/attributes/series/string"),
    "getImageSeriesValues": ("GET", "/api/leaderboard/v1/attributes/series/image"),
    "getImageSeriesValue": ("GET", "/api/leaderboard/v1/attributes/series/image/value"),
    "downloadAttribute": ("GET", "/api/leaderboard/v1/attributes/download"),
    "lsFileSetAttribute": ("GET", "/api/leaderboard/v1/attributes/fileSet/ls"),
    "prepareForDownloadFileSetAttributeZip": ("POST", "/api/leaderboard/v1/attributes/fileSet/zip"),
    "getDownloadPrepareRequest": ("GET", "/api/leaderboard/v1/storage/downloadPrepareRequest"),
    "searchLeaderboardAttributes": ("POST", "/api/leaderboard/v1/leaderboard/attributes/query"),
    "searchLeaderboardEntries": ("POST", "/api/leaderboard/v1/leaderboard/entries/search"),
}
ARTIFACTS_OPERATIONS: dict[str, tuple[str, str]] = {
    "listArtifactFiles": ("GET", "/api/artifacts/v1/files"),
}
# Not an operation: the URL a prepared FileSet zip is fetched from (handed out in DownloadPrepareRequest).
ZIP_DOWNLOAD_PATH = "/api/leaderboard/v1/storage/zip"


def _query(name: str, kind: str = "string", required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "type": kind, "required": required}


def _query_list(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "type": "array",
        "items": {"type": "string"},
        "collectionFormat": "multi",
    }


def _header(name: str) -> dict[str, Any]:
    return {"name": name, "in": "header", "type": "string", "required": False}


def _body(name: str) -> dict[str, Any]:
    return {"name": name, "in": "body", "required": False, "schema": {"type": "object"}}


_EXPERIMENT_ATTRIBUTE = [_query("experimentId", required=True), _query("attribute", required=True)]
_PAGE = [_query("limit", "integer"), _query("offset", "integer")]

# operationId -> (parameters, response schema)
_SIGNATURES: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {
    "getClientConfig": (
        [_header("X-Neptune-Api-Token"), _query("alpha")],
        {"$ref": "#/definitions/ClientConfig"},
    ),
    "exchangeApiToken": ([_header("X-Neptune-Api-Token")], {"$ref": "#/definitions/NeptuneOauthToken"}),
    "listProjects": (
        [
            _query("limit", "integer"),
            _query("offset", "integer"),
            _query("organizationIdentifier"),
            _query("searchTerm"),
            _query_list("sortBy"),
            _query_list("sortDirection"),
            _query("userRelation"),
        ],
        {"$ref": "#/definitions/ProjectList"},
    ),
    "getProject": ([_query("projectIdentifier", required=True)], {"$ref": "#/definitions/Project"}),
    "listOrganizations": ([], {"type": "array", "items": {"$ref": "#/definitions/Organization"}}),
    "getExperiment": ([_query("experimentId", required=True)], {"$ref": "#/definitions/Experiment"}),
    "getExperimentAttributes": (
        [_query("experimentId", required=True)],
        {"$ref": "#/definitions/Attributes"},
    ),
    # get<Type>Attribute answers the <Type>Attribute model (the operationId minus its "get").
    **{op: (_EXPERIMENT_ATTRIBUTE, {"$ref": f"#/definitions/{op[3:]}"}) for op in ATTRIBUTE_GETTERS},
    "getFloatSeriesValues": (_EXPERIMENT_ATTRIBUTE + _PAGE, {"$ref": "#/definitions/FloatSeriesValues"}),
    "getStringSeriesValues": (_EXPERIMENT_ATTRIBUTE + _PAGE, {"$ref": "#/definitions/StringSeriesValues"}),
    "getImageSeriesValues": (_EXPERIMENT_ATTRIBUTE + _PAGE, {"$ref": "#/definitions/ImageSeriesValues"}),
    "getImageSeriesValue": (_EXPERIMENT_ATTRIBUTE + [_query("index", "integer", True)], {"type": "file"}),
    "downloadAttribute": (_EXPERIMENT_ATTRIBUTE, {"type": "file"}),
    "lsFileSetAttribute": (
        _EXPERIMENT_ATTRIBUTE + [_query("path")],
        {"type": "array", "items": {"$ref": "#/definitions/FileEntry"}},
    ),
    "prepareForDownloadFileSetAttributeZip": (
        _EXPERIMENT_ATTRIBUTE,
        {"$ref": "#/definitions/DownloadPrepareRequest"},
    ),
    "getDownloadPrepareRequest": (
        [_query("id", required=True)],
        {"$ref": "#/definitions/DownloadPrepareRequest"},
    ),
    "searchLeaderboardAttributes": (
        [_query("projectIdentifier", required=True), _query("search"), _query_list("type"), _body("params")],
        {"$ref": "#/definitions/LeaderboardAttributes"},
    ),
    "searchLeaderboardEntries": (
        [_query("projectIdentifier", required=True), _query_list("type"), _body("params")],
        {"$ref": "#/definitions/LeaderboardEntries"},
    ),
    "listArtifactFiles": (
        [_query("projectIdentifier", required=True), _query("hash", required=True)],
        {"$ref": "#/definitions/ArtifactFiles"},
    ),
}


def _obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


_S = {"type": "string"}
_I = {"type": "integer", "format": "int64"}
_F = {"type": "number", "format": "double"}
_B = {"type": "boolean"}
_DT = {"type": "string", "format": "date-time"}
_STRINGS = {"type": "array", "items": _S}
_FREE = {"type": "object"}  # properties read as raw dicts by the client (leaderboard) or passed through


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/definitions/{name}"}


def _list(name: str) -> dict[str, Any]:
    return {"type": "array", "items": _ref(name)}


_DEFINITIONS: dict[str, dict[str, Any]] = {
    "ClientConfig": _obj(
        apiUrl=_S,
        applicationUrl=_S,
        pyLibVersions=_ref("PyLibVersions"),
        multiPartUpload=_ref("MultiPartUpload"),
        artifacts=_ref("ArtifactsConfig"),
        sysNameSetByBackend=_B,
    ),
    "NeptuneOauthToken": _obj(accessToken=_S, refreshToken=_S, username=_S),
    "Project": _obj(
        id=_S,
        name=_S,
        organizationName=_S,
        organizationId=_S,
        projectKey=_S,
        version=_I,
        visibility=_S,
        description=_S,
    ),
    "ProjectList": _obj(entries=_list("Project"), matchingItemCount=_I, totalItemCount=_I),
    "Organization": _obj(id=_S, name=_S),
    "Experiment": _obj(
        id=_S,
        type=_S,
        shortId=_S,
        organizationName=_S,
        organizationId=_S,
        projectName=_S,
        projectId=_S,
        trashed=_B,
    ),
    "Attribute": _obj(
        name=_S,
        type=_S,
        floatProperties=_ref("FloatAttribute"),
        intProperties=_ref("IntAttribute"),
        boolProperties=_ref("BoolAttribute"),
        stringProperties=_ref("StringAttribute"),
        datetimeProperties=_ref("DatetimeAttribute"),
        experimentStateProperties=_ref("ExperimentStateAttribute"),
        notebookRefProperties=_ref("NotebookRefAttribute"),
        gitRefProperties=_ref("GitRefAttribute"),
        fileProperties=_ref("FileAttribute"),
        fileSetProperties=_ref("FileSetAttribute"),
        imageSeriesProperties=_ref("ImageSeriesAttribute"),
        floatSeriesProperties=_ref("FloatSeriesAttribute"),
        stringSeriesProperties=_ref("StringSeriesAttribute"),
        stringSetProperties=_ref("StringSetAttribute"),
        artifactProperties=_ref("ArtifactAttribute"),
    ),
    "Attributes": _obj(attributes=_list("Attribute")),
    "PyLibVersions": _obj(minRecommendedVersion=_S, minCompatibleVersion=_S, maxCompatibleVersion=_S),
    "MultiPartUpload": _obj(enabled=_B),
    "ArtifactsConfig": _obj(enabled=_B, apiVersion=_I),
    "GitCommit": _obj(commitId=_S, message=_S, authorName=_S, authorEmail=_S, commitDate=_DT),
    "GitRefAttribute": _obj(
        attributeName=_S,
        attributeType=_S,
        commit=_ref("GitCommit"),
        currentBranch=_S,
        remotes=_STRINGS,
        repositoryDirty=_B,
    ),
    # `value` is declared but never sent: the client's generic namespace fetch reads `.value` of notebookRef
    # properties (neptune/internal/utils/generic_attribute_mapper.py) and would fail on an undeclared field.
    "NotebookRefAttribute": _obj(
        attributeName=_S,
        attributeType=_S,
        notebookId=_S,
        notebookName=_S,
        checkpointId=_S,
        checkpointName=_S,
        value=_S,
    ),
    "ExperimentStateAttribute": _obj(attributeName=_S, attributeType=_S, value=_S),
    "FileSetAttribute": _obj(attributeName=_S, attributeType=_S, size=_I),
    "ImageSeriesAttribute": _obj(attributeName=_S, attributeType=_S, lastStep=_F),
    "FloatAttribute": _obj(attributeName=_S, attributeType=_S, value=_F),
    "IntAttribute": _obj(attributeName=_S, attributeType=_S, value=_I),
    "BoolAttribute": _obj(attributeName=_S, attributeType=_S, value=_B),
    "StringAttribute": _obj(attributeName=_S, attributeType=_S, value=_S),
    "DatetimeAttribute": _obj(attributeName=_S, attributeType=_S, value=_DT),
    "FileAttribute": _obj(attributeName=_S, attributeType=_S, name=_S, ext=_S, size=_I),
    "StringSetAttribute": _obj(attributeName=_S, attributeType=_S, values=_STRINGS),
    "FloatSeriesAttribute": _obj(
        attributeName=_S, attributeType=_S, last=_F, lastStep=_F, min=_F, max=_F, average=_F, variance=_F
    ),
    "StringSeriesAttribute": _obj(attributeName=_S, attributeType=_S, last=_S, lastStep=_F),
    "ArtifactAttribute": _obj(attributeName=_S, attributeType=_S, hash=_S),
    "FloatPoint": _obj(step=_F, timestampMillis=_I, value=_F),
    "FloatSeriesValues": _obj(totalItemCount=_I, values=_list("FloatPoint")),
    "StringPoint": _obj(step=_F, timestampMillis=_I, value=_S),
    "StringSeriesValues": _obj(totalItemCount=_I, values=_list("StringPoint")),
    "ImageValue": _obj(name=_S, description=_S, size=_I),
    "ImagePoint": _obj(step=_F, timestampMillis=_I, value=_ref("ImageValue")),
    "ImageSeriesValues": _obj(totalItemCount=_I, values=_list("ImagePoint")),
    "FileEntry": _obj(name=_S, size=_I, mtime=_DT, fileType=_S),
    "DownloadPrepareRequest": _obj(id=_S, downloadUrl=_S),
    "LeaderboardAttribute": _obj(name=_S, type=_S),
    "LeaderboardAttributes": _obj(entries=_list("LeaderboardAttribute")),
    "LeaderboardEntries": _obj(
        matchingItemCount=_I, totalGroupCount=_I, entries={"type": "array", "items": _FREE}
    ),
    "ArtifactFileMetadata": _obj(key=_S, value=_S),
    "ArtifactFile": _obj(filePath=_S, fileHash=_S, type=_S, size=_I, metadata=_list("ArtifactFileMetadata")),
    "ArtifactFiles": _obj(files=_list("ArtifactFile")),
}


def build_spec(title: str, operations: dict[str, tuple[str, str]]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for operation_id, (method, path) in operations.items():
        parameters, schema = _SIGNATURES[operation_id]
        produces = ["application/octet-stream"] if schema.get("type") == "file" else ["application/json"]
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


SPECS: dict[str, dict[str, Any]] = {
    BACKEND_SPEC_PATH: build_spec("backend", BACKEND_OPERATIONS),
    LEADERBOARD_SPEC_PATH: build_spec("leaderboard", LEADERBOARD_OPERATIONS),
    ARTIFACTS_SPEC_PATH: build_spec("artifacts", ARTIFACTS_OPERATIONS),
}
