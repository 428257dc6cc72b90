"""The S3 uploads' per-loop httpx client: a network failure retires it, so a pool the failure left stuck
never holds up the loop's later requests; every client the loop had is closed with it."""

from __future__ import annotations

import asyncio

from nmig.importer import upload


def test_a_network_failure_gives_the_loop_a_new_client_and_both_are_closed_with_it() -> None:
    loop = asyncio.new_event_loop()
    try:

        async def first_then_retired() -> tuple[object, object, object]:
            first = upload._loop_client()
            again = upload._loop_client()
            upload._retire_loop_client(first)
            upload._retire_loop_client(first)  # a second failure of the same client retires nothing more
            return first, again, upload._loop_client()

        first, again, fresh = loop.run_until_complete(first_then_retired())
        assert again is first and fresh is not first
        upload.close_loop_client(loop)
        assert first.is_closed and fresh.is_closed  # type: ignore[attr-defined]
        assert loop not in upload._CLIENTS and loop not in upload._RETIRED
    finally:
        loop.close()


def test_a_put_whose_connection_fails_is_sent_again_on_a_new_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A server that drops the first connection: the retry reaches it through a new client and gets the ETag.
    import socket
    import threading

    body = tmp_path / "part.bin"
    body.write_bytes(b"x" * 1000)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    seen: list[int] = []

    def serve() -> None:
        for n in range(2):
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, rest = data.partition(b"\r\n\r\n")
                length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
                while len(rest) < length:
                    rest += conn.recv(65536)
                seen.append(len(rest))
                if n == 0:
                    conn.shutdown(socket.SHUT_RDWR)  # dropped without an answer
                    continue
                conn.sendall(b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    loop = asyncio.new_event_loop()
    try:
        etag = loop.run_until_complete(upload._put(f"http://127.0.0.1:{port}/b/k", str(body), 0, 1000, "application/octet-stream"))
        assert etag == "abc" and seen == [1000, 1000]
        assert len(upload._RETIRED.get(loop, [])) == 1
    finally:
        upload.close_loop_client(loop)
        loop.close()
        listener.close()
        thread.join(timeout=5)
