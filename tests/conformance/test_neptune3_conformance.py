"""The 3.x emulator held to the real service's published specs (neptune3_contract.json, extracted from them).

Fails when the emulator serves an endpoint the specs lack or at another path, reads a query parameter or body
field its endpoint does not declare, answers a status its endpoint does not list, or answers a field the
model lacks, with another type, or without a required one; protobuf answers must parse as their message, and
the client's compiled messages must have the fields the published .proto files give them. What the clients
exchange is recorded from a workload of the unmodified neptune-scale and neptune-query against the emulator.

Every exemption is below with its evidence (the client's file and line, under site-packages).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nmig.emulators import http

CONTRACT = json.loads((Path(__file__).parent / "neptune3_contract.json").read_text(encoding="utf-8"))
def _reference() -> Path:
    """The neptune-api reference specs: $NMIG_NEPTUNE_API_REFERENCE, else shared/ beside the checkout (where CI
    puts it), else the developers' /work/shared."""
    if os.environ.get("NMIG_NEPTUNE_API_REFERENCE"):
        return Path(os.environ["NMIG_NEPTUNE_API_REFERENCE"])
    beside = Path(__file__).resolve().parents[3] / "shared" / "reference" / "neptune-api"
    return beside if beside.exists() else Path("/work/shared/reference/neptune-api")


REFERENCE = _reference()

_SIGNED_URLS = (
    "a signed URL's own endpoint: SignedFile.url (storagebridge_openapi.json) is the storage provider's URL, "
    "outside neptune-api's specs; the clients speak the provider's protocol to it: "
    "neptune_scale/sync/sync_process.py:609-633, neptune_scale/sync/storage/s3.py:340, gcs.py:156 and 181, "
    "azure_storage.py:21-36, neptune_query/internal/retrieval/files.py:145-152"
)
# Routes the specs do not have, each with its evidence.
EXEMPT_ROUTES: dict[tuple[str, str], str] = {
    ("GET", "/auth/realms/neptune/.well-known/openid-configuration"): (
        "the OpenID discovery document ClientConfig.security.openIdDiscovery names (the identity provider, "
        "outside neptune-api's specs): neptune_scale/net/api_client.py:130 fetches it, :101 reads "
        "authorization_endpoint and token_endpoint"
    ),
    ("POST", "/auth/realms/neptune/protocol/openid-connect/token"): (
        "the token refresh at {issuer}/protocol/openid-connect/token: neptune_query/generated/neptune_api/types.py:112, "
        "client.py:366; neptune_scale/net/api_client.py:152"
    ),
    ("POST", "/api/client/v1/ingest/checkDetails"): (
        "not in ingestion_openapi.json at 05a7d83, but in the client's generated API: "
        "neptune_api/api/ingestion/check_details.py:55"
    ),
    ("PUT", "/s3/nmig-bucket/1/k"): _SIGNED_URLS,
    ("GET", "/s3/nmig-bucket/1/k"): _SIGNED_URLS,
    ("PUT", "/nmigstorage/neptune/1/k"): _SIGNED_URLS,
    ("GET", "/nmigstorage/neptune/1/k"): _SIGNED_URLS,
    ("POST", "/gcs/nmig-bucket/1/k"): _SIGNED_URLS,
    ("PUT", "/gcs/nmig-bucket/1/k"): _SIGNED_URLS,
    ("GET", "/gcs/nmig-bucket/1/k"): _SIGNED_URLS,
}
# Answer fields the models lack, each with its evidence.
EXEMPT_FIELDS: dict[tuple[str, str], str] = {
    (model, field): evidence
    for model, field, evidence in [
        ("Error", "key", "neptune/internal/backends/swagger_client_wrapper.py:68-70 (PROJECT_KEY_COLLISION), :71-74"),
        ("Error", "reason", "neptune/internal/backends/swagger_client_wrapper.py:73 (PROJECT_KEY_INVALID)"),
        ("Error", "name", "neptune/internal/backends/swagger_client_wrapper.py:78 (PROJECT_NAME_INVALID)"),
        ("Error", "requestedValue", "neptune/internal/backends/swagger_client_wrapper.py:81-83 (VISIBILITY_RESTRICTED)"),
        ("Error", "allowedValues", "neptune/internal/backends/swagger_client_wrapper.py:81-83 (VISIBILITY_RESTRICTED)"),
        ("Error", "validationErrors", "neptune/management/internal/api.py:264 with neptune/internal/backends/utils.py:256-261 (ERR_NOT_UNIQUE)"),
    ]
}


# Body fields the models lack that the clients send (so the emulator reads them), each with its evidence.
EXEMPT_BODY_FIELDS: dict[tuple[str, str], str] = {
    ("searchLeaderboardEntriesProto", "sorting.aggregationMode"): "neptune_query/internal/retrieval/search.py:173",
    ("queryAttributesWithinProjectProto", "attributeNamesFilter"): "neptune_query/internal/retrieval/attribute_values.py:82",
}
# Fields of the client's compiled messages that the published .proto files lack, each with its evidence.
EXEMPT_PROTO_FIELDS: dict[tuple[str, str], str] = {
    ("Run", "inherit_configs"): (
        "in the compiled neptune_api/proto/neptune_pb/ingest/v1/common_pb2 (field 9), not in common.proto at "
        "05a7d83; neptune_scale/api/run.py:561 sends it, the emulator reads it (ingest.py, _inherit_configs)"
    ),
}


def _endpoint_for(method: str, path: str) -> dict[str, Any] | None:
    for endpoint in CONTRACT["endpoints"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(endpoint["path"]))
        if endpoint["method"] == method and re.fullmatch(pattern, path):
            return endpoint
    return None


def _exemption(method: str, path: str) -> str | None:
    for (exempt_method, example), evidence in EXEMPT_ROUTES.items():
        if exempt_method == method and re.match(r"/(s3|gcs)/nmig-bucket/|/nmigstorage/neptune/", example):
            prefix = example.rsplit("/", 2)[0] + "/"
            if path.startswith(prefix):
                return evidence
        elif (exempt_method, example) == (method, path):
            return evidence
    return None


# -- the data file is what the specs say --------------------------------------------------------------------


@pytest.mark.skipif(not (REFERENCE / "backend.json").exists(), reason="the neptune-api reference specs are not on this machine")
def test_the_contract_is_what_the_published_specs_say() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("extract_neptune3_contract", Path(__file__).parent / "extract_neptune3_contract.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.extract(REFERENCE) == CONTRACT, "re-run extract_neptune3_contract.py: the data file drifted from the specs"


def test_every_entry_names_its_source_and_snapshot() -> None:
    entries = [*CONTRACT["endpoints"], *CONTRACT["models"].values(), *CONTRACT["proto_messages"].values()]
    assert entries and all(entry.get("source") and "05a7d83" in entry.get("snapshot", "") for entry in entries)


# -- routes -------------------------------------------------------------------------------------------------


def _example(pattern: str) -> str:
    """A concrete path a route's pattern matches ((\\d+) -> 1, (.+) -> k, an optional slash kept)."""
    text = pattern.removesuffix(r"\Z").replace(r"(\d+)", "1").replace("(.+)", "k").replace("/?", "/")
    return re.sub(r"\\(.)", r"\1", text)


def test_every_route_is_a_spec_endpoint_at_its_path_or_exempt_with_evidence() -> None:
    from nmig.emulators.neptune3.server import build_app
    from nmig.emulators.neptune3.store import Store

    store = Store(None)
    try:
        routes = [(method, pattern.pattern) for method, pattern, _ in build_app(store, "demo").router._routes]
    finally:
        store.close()
    served: set[str] = set()
    wrong = []
    for method, pattern in routes:
        path = _example(pattern)
        endpoint = _endpoint_for(method, path)
        if endpoint is not None:
            assert re.fullmatch(pattern.removesuffix(r"\Z"), endpoint["path"]), f"{method} {pattern} is not at {endpoint['path']}"
            served.add(endpoint["operationId"])
        elif _exemption(method, path) is None:
            wrong.append(f"{method} {path}")
    assert wrong == [], "served, but in no spec and not exempt"
    assert served == {e["operationId"] for e in CONTRACT["endpoints"]}, "the contract lists endpoints the emulator no longer serves"


# -- what the clients exchange with the emulator ------------------------------------------------------------


class _RecordingDict(dict):  # type: ignore[type-arg]
    """A JSON object that records which of its fields a handler reads (as dotted paths, [] for list items)."""

    def __init__(self, data: dict[str, Any], prefix: str, reads: set[str]) -> None:
        super().__init__({k: _recording(v, f"{prefix}{k}", reads) for k, v in data.items()})
        self._prefix, self._reads = prefix, reads

    def get(self, key: Any, default: Any = None) -> Any:
        self._reads.add(f"{self._prefix}{key}")
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._reads.add(f"{self._prefix}{key}")
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._reads.add(f"{self._prefix}{key}")
        return super().__contains__(key)


def _recording(value: Any, path: str, reads: set[str]) -> Any:
    if isinstance(value, dict):
        return _RecordingDict(value, path + ".", reads)
    if isinstance(value, list):
        return [_recording(item, path + "[]", reads) for item in value]
    return value


@pytest.fixture(scope="module")
def exchanges(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[dict[str, Any]]]:
    """Every request the emulator's routes handled during a workload of the real clients: method, path, the
    query parameters and body fields the handler read, the answer's status, content type and body."""
    records: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    original_dispatch, original_arg, original_json = http.Router.dispatch, http.Request.arg, http.Request.json

    def dispatch(self: http.Router, request: http.Request) -> http.Response:
        record = {"method": request.method, "path": request.path, "args": set(), "fields": set()}
        current[id(request)] = record
        try:
            response = original_dispatch(self, request)
        finally:
            del current[id(request)]
        body = response.body if isinstance(response.body, bytes) else None
        record.update(status=response.status, content_type=response.content_type, body=body)
        records.append(record)
        return response

    def arg(self: http.Request, name: str, default: str | None = None) -> str | None:
        if id(self) in current:
            current[id(self)]["args"].add(name)
        return original_arg(self, name, default)

    def json_body(self: http.Request) -> Any:
        value = original_json(self)
        if id(self) in current and isinstance(value, dict):
            return _RecordingDict(value, "", current[id(self)]["fields"])
        return value

    tmp = tmp_path_factory.mktemp("conformance")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(http.Router, "dispatch", dispatch)
        patch.setattr(http.Request, "arg", arg)
        patch.setattr(http.Request, "json", json_body)
        _workload(tmp)
    yield records


def _workload(tmp: Path) -> None:
    import neptune_query as nq
    import neptune_query.runs as nq_runs
    from neptune_scale import Run
    from neptune_scale.exceptions import NeptuneBadRequestError
    from neptune_scale.projects import create_project, list_projects
    from neptune_scale.types import Histogram

    from nmig.emulators.neptune3 import serve_neptune3
    from nmig.importer.target import backend_http, find_project

    with serve_neptune3(data_dir=tmp / "data", multipart_part_size=256 * 1024, allowed_visibilities=("priv", "workspace")) as info:
        token = info.api_token
        create_project("demo/conf", key="CONF", visibility="workspace", description="d", api_token=token)
        for bad in ({"key": "lower"}, {"key": "CONF"}, {"visibility": "pub"}):
            with pytest.raises(NeptuneBadRequestError):
                create_project("demo/other", api_token=token, **bad)
        with pytest.raises(NeptuneBadRequestError):
            create_project("demo/conf", api_token=token)
        with pytest.raises(NeptuneBadRequestError):
            create_project("nowhere/x", api_token=token)
        list_projects(api_token=token)
        backend = backend_http(token)
        assert find_project(backend, "demo/conf") is not None and find_project(backend, "demo/none") is None
        backend.get("/api/backend/v1/projects", params={"searchTerm": "con", "offset": 0, "limit": 1})

        (tmp / "big.bin").write_bytes(os.urandom(600 * 1024))
        with Run(project="demo/conf", api_token=token, run_id="r", experiment_name="e", log_directory=tmp / "client",
                 enable_console_log_capture=False, source_tracking_config=None) as run:
            run.log_configs({"f": 1.5, "i": 2, "s": "x", "b": True, "set": {"a"}})
            for step in range(1, 4):
                run.log_metrics({"m/loss": 1.0 / step}, step=step)
                run.log_string_series({"logs": f"line {step}"}, step=step)
                run.log_histograms({"h": Histogram(bin_edges=[0.0, 1.0], counts=[step])}, step=step)
            run.add_tags(["t"])
            run.assign_files({"files/big": str(tmp / "big.bin")})
            run.log_files({"fs": b"series file"}, step=1)
            run.wait_for_processing()

        nq.set_api_token(token)
        nq_runs.list_runs(project="demo/conf")
        nq_runs.list_attributes(project="demo/conf")
        table = nq_runs.fetch_runs_table(project="demo/conf", attributes=["f", "i", "s", "b", "set", "files/big", "m/loss"])
        nq_runs.download_files(files=table[["files/big"]], destination=tmp / "down")
        nq_runs.fetch_metrics(project="demo/conf", runs=["r"], attributes=["m/loss"], include_time="absolute")
        nq_runs.fetch_series(project="demo/conf", runs=["r"], attributes=["logs", "h", "fs"])
        nq.fetch_experiments_table(project="demo/conf")
        nq.fetch_metric_buckets(project="demo/conf", experiments=["e"], y=["m/loss"], limit=3)
        from nmig.importer.target import trash_run

        assert trash_run("demo/conf", token, "r") is None  # nmig import --sync-trash's one call of trashExperiments
        assert nq_runs.list_runs(project="demo/conf") == []


def _type_ok(value: Any, type_text: str, models: dict[str, Any], where: str, problems: list[str]) -> None:
    if type_text.endswith("?"):
        if value is None:
            return
        type_text = type_text[:-1]
    if type_text == "any":
        return
    if type_text.startswith("ref:"):
        model = models[type_text[4:]]
        if "enum" in model:
            if value not in model["enum"]:
                problems.append(f"{where}: {value!r} is not one of {type_text[4:]} {model['enum']}")
            return
        _object_ok(value, type_text[4:], models, where, problems)
        return
    if type_text.startswith("array<"):
        if not isinstance(value, list):
            problems.append(f"{where}: {type(value).__name__}, not {type_text}")
            return
        for index, item in enumerate(value):
            _type_ok(item, type_text[6:-1], models, f"{where}[{index}]", problems)
        return
    if type_text.startswith("enum("):
        if value not in type_text[5:-1].split("|"):
            problems.append(f"{where}: {value!r} is not one of {type_text}")
        return
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict}
    expected = kinds[type_text.split("/")[0]]
    if not isinstance(value, expected) or (isinstance(value, bool) and type_text.split("/")[0] in ("integer", "number")):
        problems.append(f"{where}: {value!r} is not {type_text}")


def _object_ok(value: Any, model_name: str, models: dict[str, Any], where: str, problems: list[str]) -> None:
    model = models[model_name]
    if not isinstance(value, dict):
        problems.append(f"{where}: not an object ({model_name})")
        return
    for field, item in value.items():
        if field not in model["fields"]:
            if (model_name, field) not in EXEMPT_FIELDS:
                problems.append(f"{where}.{field}: {model_name} has no such field")
            continue
        _type_ok(item, model["fields"][field], models, f"{where}.{field}", problems)
    problems.extend(f"{where}: required {model_name}.{f} missing" for f in model["required"] if f not in value)


def _declared_fields(type_text: str | None, models: dict[str, Any]) -> set[str]:
    """Every dotted field path a body of `type_text` may carry (lists as [], nested objects followed)."""
    found: set[str] = set()

    def walk(type_text: str, prefix: str, seen: tuple[str, ...]) -> None:
        type_text = type_text.rstrip("?")
        if type_text.startswith("array<"):
            walk(type_text[6:-1], prefix + "[]", seen)
        # a model may hold itself (AttributeNameFilterDTO.mustMatchAny): followed twice, not forever
        elif type_text.startswith("ref:") and seen.count(type_text[4:]) < 2 and "fields" in models[type_text[4:]]:
            name = type_text[4:]
            for field, sub in models[name]["fields"].items():
                found.add(f"{prefix}{'.' if prefix else ''}{field}")
                walk(sub, f"{prefix}{'.' if prefix else ''}{field}", (*seen, name))

    walk(type_text or "", "", ())
    return found


def test_the_workload_reached_every_endpoint_of_the_contract(exchanges: list[dict[str, Any]]) -> None:
    reached = {e["operationId"] for r in exchanges if (e := _endpoint_for(r["method"], r["path"])) is not None}
    assert reached == {e["operationId"] for e in CONTRACT["endpoints"]}


def test_handlers_read_only_declared_parameters_and_body_fields(exchanges: list[dict[str, Any]]) -> None:
    problems = set()
    for record in exchanges:
        endpoint = _endpoint_for(record["method"], record["path"])
        if endpoint is None:
            continue
        declared = {name for name, p in endpoint["parameters"].items() if p["in"] == "query"}
        problems.update(f"{endpoint['operationId']}: query parameter {a!r} not declared" for a in record["args"] - declared)
        fields = _declared_fields(endpoint["body"], CONTRACT["models"])
        fields |= {field for (operation, field) in EXEMPT_BODY_FIELDS if operation == endpoint["operationId"]}
        problems.update(f"{endpoint['operationId']}: body field {f!r} not in {endpoint['body']}" for f in record["fields"] - fields)
    assert sorted(problems) == []


def test_answers_have_listed_statuses_and_the_models_fields_and_types(exchanges: list[dict[str, Any]]) -> None:
    problems: list[str] = []
    for record in exchanges:
        endpoint = _endpoint_for(record["method"], record["path"])
        if endpoint is None:
            continue
        name, status = endpoint["operationId"], str(record["status"])
        if status not in endpoint["responses"] and "default" not in endpoint["responses"]:
            problems.append(f"{name}: answered {status}, which it does not list ({sorted(endpoint['responses'])})")
            continue
        model = endpoint["responses"].get(status)
        if record["content_type"] == "application/json" and record["body"] and model and model.startswith("ref:"):
            name_of_model = model[4:]
            if name_of_model in CONTRACT["models"] and "fields" in CONTRACT["models"][name_of_model]:
                _type_ok(json.loads(record["body"]), model, CONTRACT["models"], f"{name} {status}", problems)
    assert sorted(set(problems)) == []


def _message_class(name: str) -> Any:
    import importlib

    for module_name in (
        "neptune_api.proto.neptune_pb.ingest.v1.pub.client_pb2",
        "neptune_api.proto.neptune_pb.ingest.v1.pub.ingest_pb2",
        "neptune_api.proto.neptune_pb.ingest.v1.pub.request_status_pb2",
        "neptune_api.proto.neptune_pb.ingest.v1.common_pb2",
        "neptune_api.proto.neptune_pb.api.v1.model.leaderboard_entries_pb2",
        "neptune_api.proto.neptune_pb.api.v1.model.attributes_pb2",
        "neptune_api.proto.neptune_pb.api.v1.model.series_values_pb2",
        "neptune_api.proto.neptune_pb.api.v1.model.requests_pb2",
    ):
        module = importlib.import_module(module_name)
        if hasattr(module, name):
            return getattr(module, name)
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for nested in message.nested_types:
                if nested.name == name:
                    return getattr(getattr(module, message.name), name)
    raise LookupError(name)


def test_protobuf_answers_parse_as_their_message(exchanges: list[dict[str, Any]]) -> None:
    checked = set()
    for record in exchanges:
        endpoint = _endpoint_for(record["method"], record["path"])
        if endpoint is None or "proto_response" not in endpoint or record["status"] != 200:
            continue
        assert record["content_type"] == "application/x-protobuf", endpoint["operationId"]
        message = _message_class(endpoint["proto_response"]).FromString(record["body"])
        assert message.ByteSize() == len(record["body"]) or not message.DESCRIPTOR.fields, endpoint["operationId"]
        checked.add(endpoint["operationId"])
    assert checked == {e["operationId"] for e in CONTRACT["endpoints"] if "proto_response" in e}


def test_the_clients_compiled_messages_have_the_published_fields() -> None:
    """The emulator builds and parses protobuf bodies with the client's compiled classes; they must be the
    messages of the published .proto files (names and numbers of their fields)."""
    problems = []
    for name, message in CONTRACT["proto_messages"].items():
        descriptor = _message_class(name).DESCRIPTOR
        compiled = {field.name: field.number for field in descriptor.fields if (name, field.name) not in EXEMPT_PROTO_FIELDS}
        published = {field: int(text.rsplit("= ", 1)[1]) for field, text in message["fields"].items()}
        if compiled != published:
            problems.append(f"{name}: compiled {compiled} != published {published}")
    assert problems == []
