"""A small HTTP CONNECT proxy for the tests: the kind of forward proxy that carries HTTPS at self-hosted sites.

It binds 127.0.0.1 only, tunnels only to loopback ports, closes a tunnel idle for `idle_s`, and counts the
tunnels it opened per target, so a test can prove that a client's traffic went through it. Anything but
CONNECT is answered 405 and counted too (the HTTPS path never needs it). Stops with its context manager.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

_LOOPBACK_TARGETS = ("127.0.0.1", "localhost", "[::1]")


@dataclass
class ProxyStats:
    connects: Counter[str] = field(default_factory=Counter)  # "host:port" -> tunnels opened
    refused: Counter[str] = field(default_factory=Counter)  # request lines not tunnelled
    lock: threading.Lock = field(default_factory=threading.Lock)

    def snapshot(self) -> tuple[Counter[str], Counter[str]]:
        with self.lock:
            return Counter(self.connects), Counter(self.refused)

    def reset(self) -> None:
        with self.lock:
            self.connects.clear()
            self.refused.clear()


class _Tunnel(socketserver.BaseRequestHandler):
    server: _ProxyServer

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(self.server.idle_s)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = client.recv(4096)
            if not chunk or len(head) > 16384:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.split(" ", 1)[0]
        host, _, port = target.rpartition(":")
        stats = self.server.stats
        if method != "CONNECT" or host not in _LOOPBACK_TARGETS or not port.isdigit():
            with stats.lock:
                stats.refused[request_line] += 1
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        try:
            upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=self.server.idle_s)
        except OSError:
            client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        with stats.lock:
            stats.connects[target] += 1
        with upstream:
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            leftover = head.split(b"\r\n\r\n", 1)[1]
            if leftover:
                upstream.sendall(leftover)
            self._pipe(client, upstream)

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        # selectors, not select.select: late in a test session the process holds over a thousand descriptors,
        # and select.select refuses any numbered 1024 or more (each tunnel then died right after its
        # "200 Connection established", and a client behind the proxy waited on its time-outs).
        peers = {client: upstream, upstream: client}
        last_active = time.monotonic()
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while not self.server.stopping.is_set():
                readable = [key.fileobj for key, _ in selector.select(0.5)]
                if not readable:
                    if time.monotonic() - last_active > self.server.idle_s:
                        return  # idle: the tunnel is closed, as real proxies do
                    continue
                last_active = time.monotonic()
                for sock in readable:
                    try:
                        data = sock.recv(65536)  # type: ignore[union-attr]
                    except OSError:
                        return
                    if not data:
                        return
                    peers[sock].sendall(data)  # type: ignore[index]


class _ProxyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, idle_s: float) -> None:
        self.stats = ProxyStats()
        self.idle_s = idle_s
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", 0), _Tunnel)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client or server closing a tunnel mid-stream is normal for a proxy


@contextlib.contextmanager
def connect_proxy(idle_s: float = 30.0) -> Iterator[tuple[str, ProxyStats]]:
    """Run the proxy on a background thread; yields its URL ("http://127.0.0.1:PORT") and its counters."""
    server = _ProxyServer(idle_s)
    thread = threading.Thread(target=server.serve_forever, name="test-connect-proxy", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.stats
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
