"""A small loopback HTTP framework shared by both emulators: routing, fault injection, serving.

Why not a web framework: the emulators must add no dependency to the product, start in milliseconds inside a
test, and keep per-request overhead small enough that the server is never the bottleneck of a client. The
stdlib's threading server with HTTP/1.1 keep-alive is enough for that on loopback.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import signal
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
# Where both clients exchange an API token for access tokens: the same path in Neptune 2.x and 3.x.
OAUTH_TOKEN_PATH = "/api/backend/v1/authorization/oauth-token"


@dataclass(frozen=True)
class EmulatorInfo:
    """What a client needs to reach an emulator; printed as one JSON line by `nmig emulate ...`."""

    url: str
    api_token: str
    workspace: str
    env: dict[str, str] = field(default_factory=dict)
    # With --tls: the private CA's certificate (PEM) that signed the server's; a client is given it with
    # --ca-bundle or REQUESTS_CA_BUNDLE / SSL_CERT_FILE. None when serving plain HTTP.
    ca_file: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {"url": self.url, "api_token": self.api_token, "workspace": self.workspace, "env": self.env, "ca_file": self.ca_file}
        )


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # keys lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes | Iterator[bytes] = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Response:
        return cls(status, json.dumps(payload, allow_nan=False).encode("utf-8"))

    @classmethod
    def error(cls, status: int, title: str, message: str | None = None) -> Response:
        return cls.json({"code": status, "errorType": title, "title": title, "message": message or title}, status)


Handler = Callable[[Request, "re.Match[str]"], Response]


class Router:
    """Routes by method and a regular expression on the path; the first match wins."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        self._routes.append((method.upper(), re.compile(pattern + r"\Z"), handler))

    def route(self, method: str, pattern: str) -> Callable[[Handler], Handler]:
        def decorate(handler: Handler) -> Handler:
            self.add(method, pattern, handler)
            return handler

        return decorate

    def shape_fault(self, path: str, fault: Response) -> Response:
        """How this service answers at `path` a fault the FaultPlan injected (`fault`: its generic JSON answer,
        429 for a throttle, 500 or 503 for an error). A service with paths that answer in another way (a 3.x
        emulator's object storage) says so here."""
        return fault

    def dispatch(self, request: Request) -> Response:
        path_matched = False
        for method, pattern, handler in self._routes:
            match = pattern.match(request.path)
            if match is None:
                continue
            path_matched = True
            if method == request.method:
                return handler(request, match)
        if path_matched:
            return Response.error(405, "Method not allowed", f"{request.method} {request.path}")
        return Response.error(404, "Not found", f"no such endpoint: {request.method} {request.path}")


@dataclass
class FaultPlan:
    """Deterministic fault injection: the same seed gives the same sequence of faults.

    A fault is decided before the handler runs, so a faulted request never half-applies anything.
    """

    fail_rate: float = 0.0
    throttle_rate: float = 0.0
    latency_ms: int = 0
    seed: int = 0
    # Paths that are never faulted (e.g. the spec download a client does once at start-up, before its retry
    # machinery exists). Each emulator lists its own.
    exempt: tuple[str, ...] = ()
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)
    # How many faults (errors and throttles) were injected so far; tests check that faults really happened.
    injected: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        for name in ("fail_rate", "throttle_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.fail_rate + self.throttle_rate > 1.0:
            raise ValueError("fail_rate + throttle_rate must not exceed 1")
        if self.latency_ms < 0:
            raise ValueError("latency_ms must not be negative")
        self._rng = random.Random(self.seed)

    def decide(self, path: str) -> Response | None:
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000.0)
        if not (self.fail_rate or self.throttle_rate) or any(path.startswith(p) for p in self.exempt):
            return None
        with self._lock:
            draw = self._rng.random()
            status = self._rng.choice((500, 503))
            if draw < self.fail_rate + self.throttle_rate:
                self.injected += 1
        if draw < self.fail_rate:
            return Response.error(status, "Injected fault", "emulated server error (--fail-rate)")
        if draw < self.fail_rate + self.throttle_rate:
            # ASSUMPTION: a throttled request is answered 429 with Retry-After: 1 (seconds). The published specs
            # list 429 answers but no Retry-After header or value (no evidence); both 2.x and 3.x read clients
            # honour the header when it is there (neptune/common/backends/utils.py, which reads it as whole
            # seconds; neptune_query internal/retrieval/retry.py:114), neptune-scale backs off on its own
            # (sync_process.py:287). A service whose paths answer otherwise reshapes it (Router.shape_fault:
            # the 3.x emulator's object storage answers as its provider does, storage_wire.storage_fault).
            return Response(429, b'{"title": "Too many requests"}', headers={"Retry-After": "1"})
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle on, the body waits for the client's delayed ACK
    # (40 ms on Linux) on every keep-alive request.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass  # requests carry tokens in headers and queries: never log them

    def setup(self) -> None:
        # The TLS handshake runs here, on the connection's own thread, not in the accepting loop: a slow or
        # refusing client (one that does not trust the CA) holds up only itself.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30)  # a client that connects and never speaks does not hold a thread forever
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = Request(
            method=self.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
        )
        response = self.server.faults.decide(request.path)
        if response is not None:
            response = self.server.router.shape_fault(request.path, response)
        else:
            try:
                response = self.server.router.dispatch(request)
            except Exception as exc:  # an emulator bug must surface as a 500, not a dropped connection
                response = Response.error(500, "Internal error", f"{type(exc).__name__}: {exc}")
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if isinstance(response.body, bytes):
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        else:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in response.body:
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, host: str, port: int, router: Router, faults: FaultPlan, tls: ssl.SSLContext | None = None
    ) -> None:
        if host not in LOOPBACK_HOSTS and not host.startswith("127."):
            raise ValueError(f"the emulators bind loopback addresses only, not {host!r}")
        self.router = router
        self.faults = faults
        self.tls = tls
        super().__init__((host, port), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        connection, address = super().get_request()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True, do_handshake_on_connect=False)
        return connection, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-connection (a killed export, a reset keep-alive socket) or refuses the
        # certificate (a handshake the client aborts) is normal for a service; socketserver would print a
        # traceback to stderr, which lands in whatever captures it at the time (a test's CLI runner). Anything
        # else is still printed.
        if isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError)):
            return
        super().handle_error(request, client_address)


@contextlib.contextmanager
def serve_in_thread(
    router: Router, faults: FaultPlan, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """Serve `router` on a background thread (HTTPS with `tls`); yields the base URL and stops the server on exit."""
    server = _Server(host, port, router, faults, tls)
    thread = threading.Thread(target=server.serve_forever, name="nmig-emulator", daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://{host}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def print_and_wait(info: EmulatorInfo) -> None:
    """Print the one ready line, then block until SIGINT or SIGTERM."""
    stop = threading.Event()

    def _stop(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    sys.stdout.write(info.to_json() + "\n")
    sys.stdout.flush()
    while not stop.is_set():
        stop.wait(0.5)
