"""The Neptune 3.x emulator's HTTP surface: client config, auth, projects; ingest, storage and retrieval plug in.

`serve_neptune3(...)` is the one entry point (tests use it as a context manager; `nmig emulate neptune3` wraps
it). Route modules register on the shared `Router`: `ingest.register` (RunOperation ingest and request status),
`files.register` (signed URLs, uploads, downloads) and, when it exists, `retrieval.register` (neptune-query's
read endpoints, owned by the read path).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from nmig.emulators.http import (
    OAUTH_TOKEN_PATH,
    EmulatorInfo,
    FaultPlan,
    Request,
    Response,
    Router,
    serve_in_thread,
)
from nmig.emulators.jwt import CLIENT_ID, REALM_PATH, TOKEN_PATH
from nmig.emulators.neptune3.auth import AUTHORIZE_PATH, DISCOVERY_PATH, TokenAuthority
from nmig.emulators.neptune3.backend_wire import (
    error_response,
    project_dto,
    project_list_dto,
    project_with_role_dto,
)
from nmig.emulators.neptune3.errors import BackendError, InvalidRequest, Unauthenticated
from nmig.emulators.neptune3.projects import PROJECT_NAME, VISIBILITIES, Projects
from nmig.emulators.neptune3.storage_wire import PROVIDERS, STORAGE_PREFIXES, URL_TTL_S, storage_fault
from nmig.emulators.neptune3.store import Project, Store
from nmig.emulators.tls import ensure_certificates
from nmig.secrets import make_api_token

if TYPE_CHECKING:
    from nmig.emulators.neptune3.ingest import IngestQueue, RejectRequests

CONFIG_PATH = "/api/backend/v1/clients/config"
PROJECTS_PATH = "/api/backend/v1/projects"

# Paths answered without a bearer token: what a client calls to obtain one, and signed storage URLs (which
# carry their own signature, as every provider's signed URLs do).
_OPEN_PATHS = (CONFIG_PATH, OAUTH_TOKEN_PATH, REALM_PATH, *STORAGE_PREFIXES)

# Never faulted: the one-shot calls the clients make without a retry around them (start-up config and token
# exchange, project management). Ingest, status checks, storage and retrieval are faulted; the clients retry them.
FAULT_EXEMPT = (CONFIG_PATH, OAUTH_TOKEN_PATH, REALM_PATH, PROJECTS_PATH)

@dataclass
class Neptune3App:
    """State shared by the route handlers of one emulator instance."""

    store: Store
    workspace: str
    authority: TokenAuthority
    base_url: str = ""
    # Files larger than this are uploaded in parts of this size. ASSUMPTION: 16 MiB, neptune-scale's default
    # upload chunk; S3 itself requires at least 5 MiB per part (tests lower it to exercise multipart cheaply).
    multipart_part_size: int = 16 * 1024 * 1024
    # Which kind of signed URL the storage bridge hands out ("aws" | "azure" | "gcp"), and how long they live.
    storage_provider: str = "aws"
    url_ttl_s: int = URL_TTL_S
    router: Router = field(default_factory=Router)
    # Test hook: ingest requests carrying one of these paths are rejected whole (ingest.RejectRequests).
    reject_requests: RejectRequests | None = None
    projects: Projects = field(init=False)
    ingest_queue: IngestQueue | None = None  # set by ingest.register

    def __post_init__(self) -> None:
        self.projects = Projects(self.store, self.workspace)

    # -- helpers for route modules -----------------------------------------------------------------------------

    def project_from_qualified(self, qualified: str | None) -> Project | None:
        """The project named "workspace/project", None when it does not exist (or the name is malformed)."""
        if not qualified or qualified.count("/") != 1:
            return None
        workspace, name = qualified.split("/")
        return self.store.get_project(workspace, name)

    def ensure_project(self, qualified: str) -> Project | None:
        """The project, created when missing in the emulated workspace (`create_missing_project`)."""
        project = self.project_from_qualified(qualified)
        if project is not None:
            return project
        workspace, _, name = qualified.partition("/")
        if workspace != self.workspace or not PROJECT_NAME.fullmatch(name):
            return None
        self.store.create_project(workspace, name)
        return self.project_from_qualified(qualified)


class _AuthenticatingRouter(Router):
    """Checks the bearer token before dispatching anything but the open paths."""

    def __init__(self, authority: TokenAuthority) -> None:
        super().__init__()
        self._authority = authority

    def shape_fault(self, path: str, fault: Response) -> Response:
        return storage_fault(path, fault)

    def dispatch(self, request: Request) -> Response:
        if not request.path.startswith(_OPEN_PATHS) and not self._authority.check_bearer(
            request.headers.get("authorization")
        ):
            return error_response(Unauthenticated("missing or invalid access token"))
        return super().dispatch(request)


def _register_backend(app: Neptune3App) -> None:
    router, store, authority = app.router, app.store, app.authority

    @router.route("GET", CONFIG_PATH)
    def client_config(request: Request, match: re.Match[str]) -> Response:
        return Response.json(
            {
                "apiUrl": app.base_url,
                "applicationUrl": app.base_url,
                "pyLibVersions": {},
                "security": {"clientId": CLIENT_ID, "openIdDiscovery": app.base_url + DISCOVERY_PATH},
            }
        )

    @router.route("GET", re.escape(DISCOVERY_PATH))
    def discovery(request: Request, match: re.Match[str]) -> Response:
        return Response.json(
            {
                "issuer": app.base_url + REALM_PATH,
                "authorization_endpoint": app.base_url + AUTHORIZE_PATH,
                "token_endpoint": app.base_url + TOKEN_PATH,
            }
        )

    @router.route("GET", OAUTH_TOKEN_PATH)
    def exchange_api_token(request: Request, match: re.Match[str]) -> Response:
        tokens = authority.exchange(request.headers.get("x-neptune-api-token", ""))
        if tokens is None:
            return error_response(Unauthenticated("API token rejected"))
        return Response.json(tokens)

    @router.route("POST", re.escape(TOKEN_PATH))
    def refresh_token(request: Request, match: re.Match[str]) -> Response:
        form = parse_qs(request.body.decode("utf-8", "replace"))
        if form.get("grant_type", [""])[0] != "refresh_token":
            return Response.json({"error": "unsupported_grant_type"}, 400)
        tokens = authority.refresh(form.get("refresh_token", [""])[0])
        if tokens is None:
            return Response.json({"error": "invalid_grant"}, 400)
        return Response.json(tokens)

    projects = app.projects

    @router.route("POST", PROJECTS_PATH)
    def create_project(request: Request, match: re.Match[str]) -> Response:
        try:
            body = request.json()
        except ValueError:
            return error_response(InvalidRequest("body is not JSON"))
        if not isinstance(body, dict):
            return error_response(InvalidRequest("body must be a JSON object"))
        try:
            project = projects.create(
                body.get("organizationIdentifier"), body.get("name"), body.get("projectKey"), body.get("visibility"),
                body.get("description"),
            )
        except BackendError as exc:
            return error_response(exc)
        return Response.json(project_with_role_dto(project))

    @router.route("GET", PROJECTS_PATH)
    def list_projects(request: Request, match: re.Match[str]) -> Response:
        try:
            offset = int(request.arg("offset") or 0)
            # ASSUMPTION: without a limit the backend answers everything (neptune-scale's list_projects sends none)
            limit = int(request.arg("limit") or 1_000_000)
        except ValueError:
            return error_response(InvalidRequest("offset and limit must be integers"))
        if offset < 0 or limit < 0:
            return error_response(InvalidRequest("offset and limit must not be negative"))
        page, matching = projects.search(request.arg("organizationIdentifier"), request.arg("searchTerm"), offset, limit)
        return Response.json(project_list_dto(page, matching, len(store.list_projects())))

    @router.route("GET", PROJECTS_PATH + "/get")
    def get_project(request: Request, match: re.Match[str]) -> Response:
        try:
            return Response.json(project_dto(projects.get(request.arg("projectIdentifier"))))
        except BackendError as exc:
            return error_response(exc)


def _register_optional(module_name: str, *register_args: Any) -> None:
    """Plug in a route module if it exists; an error inside an existing module is not hidden."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return
    module.register(*register_args)


def build_app(
    store: Store,
    workspace: str,
    access_ttl_s: int = 3600,
    storage_provider: str = "aws",
    url_ttl_s: int = URL_TTL_S,
    allowed_visibilities: tuple[str, ...] = VISIBILITIES,
) -> Neptune3App:
    api_key = store.meta_value("api_key", secrets.token_hex(24))
    secret = bytes.fromhex(store.meta_value("jwt_secret", secrets.token_hex(32)))
    authority = TokenAuthority(api_key=api_key, secret=secret, issuer="", access_ttl_s=access_ttl_s)
    if storage_provider not in PROVIDERS:
        raise ValueError(f"storage provider must be one of {', '.join(PROVIDERS)}, not {storage_provider!r}")
    app = Neptune3App(
        store=store,
        workspace=workspace,
        authority=authority,
        router=_AuthenticatingRouter(authority),
        storage_provider=storage_provider,
        url_ttl_s=url_ttl_s,
    )
    unknown = set(allowed_visibilities) - set(VISIBILITIES)
    if unknown or not allowed_visibilities:
        raise ValueError(f"allowed visibilities must be some of {', '.join(VISIBILITIES)}")
    app.projects.allowed_visibilities = tuple(allowed_visibilities)
    _register_backend(app)
    from nmig.emulators.neptune3 import files, ingest

    ingest.register(app)
    files.register(app)
    _register_optional("nmig.emulators.neptune3.retrieval", app, app.router, app.store)
    return app


@contextlib.contextmanager
def serve_neptune3(
    data_dir: str | Path | None = None,
    workspace: str = "demo",
    host: str = "127.0.0.1",
    port: int = 0,
    fail_rate: float = 0.0,
    throttle_rate: float = 0.0,
    latency_ms: int = 0,
    seed: int = 0,
    access_ttl_s: int = 3600,
    multipart_part_size: int = 16 * 1024 * 1024,
    faults: FaultPlan | None = None,
    reject_requests: RejectRequests | None = None,
    storage_provider: str = "aws",
    url_ttl_s: int = URL_TTL_S,
    allowed_visibilities: tuple[str, ...] = VISIBILITIES,
    tls: bool = False,
) -> Iterator[EmulatorInfo]:
    """Serve a Neptune 3.x emulator on a background thread; yields what a client needs to reach it.

    `data_dir` keeps everything acknowledged across restarts (a temporary folder, removed on exit, when None).
    `access_ttl_s` is the lifetime of access tokens (short values exercise the clients' token refresh);
    files larger than `multipart_part_size` are uploaded in parts of that size. `faults` replaces the plan
    built from the four fault arguments (a caller keeping it can read how many faults were injected).
    `reject_requests` (tests only) rejects every ingest request carrying one of its paths, whole.
    `storage_provider` is the kind of signed URL file uploads and downloads get ("aws", "azure" or "gcp"), each
    answered in that provider's protocol; they expire after `url_ttl_s` seconds (a negative value makes every
    URL expired at birth, to test how the clients take a provider's "expired" answer).
    `allowed_visibilities` are the project visibilities the workspace's plan allows (a create asking another
    is refused with VISIBILITY_RESTRICTED).
    `tls` serves HTTPS with a certificate from a private CA (EmulatorInfo.ca_file); under `data_dir` the CA
    is kept in tls/ and reused on restart, so clients keep trusting the same file.
    """
    if faults is None:
        faults = FaultPlan(fail_rate, throttle_rate, latency_ms, seed, exempt=FAULT_EXEMPT)
    store = Store(data_dir)
    app: Neptune3App | None = None
    try:
        app = build_app(store, workspace, access_ttl_s, storage_provider, url_ttl_s, tuple(allowed_visibilities))
        app.multipart_part_size = multipart_part_size
        app.reject_requests = reject_requests
        certificates = ensure_certificates(store.data_dir / "tls") if tls else None
        context = certificates.server_context() if certificates else None
        with serve_in_thread(app.router, faults, host, port, context) as url:
            # No client knows the URL before this line, so no request can see an unset base_url.
            app.base_url = url
            app.authority.issuer = url + REALM_PATH
            yield EmulatorInfo(
                url=url,
                api_token=make_api_token(url, app.authority.api_key),
                workspace=workspace,
                ca_file=str(certificates.ca_file) if certificates else None,
            )
    finally:
        if app is not None and app.ingest_queue is not None:
            app.ingest_queue.close()  # before the store: it may be applying a request
        store.close()
