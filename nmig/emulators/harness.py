"""Driving an emulator from outside, as tests and benchmarks do: `nmig emulate ...` in a child process, and a
bearer access token obtained the way both clients obtain one.

A child process keeps the server off the caller's GIL (as a real service is elsewhere) and lets a test kill it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nmig.emulators.http import OAUTH_TOKEN_PATH, EmulatorInfo


@dataclass
class EmulatorProcess:
    process: subprocess.Popen[str]
    ready: dict[str, Any]  # the ready line as the emulator printed it

    @property
    def info(self) -> EmulatorInfo:
        return EmulatorInfo(**self.ready)

    def __repr__(self) -> str:  # keeps the API token out of assertion messages
        return f"EmulatorProcess(pid={self.process.pid}, url={self.ready.get('url')!r})"


@contextlib.contextmanager
def emulator_process(kind: str, *options: str, cwd: str | Path | None = None) -> Iterator[EmulatorProcess]:
    """Run `nmig emulate KIND OPTIONS...` until its ready line; stop it on exit (unless it has ended already).

    Raises RuntimeError with the end of its stderr when it ends without a ready line.
    """
    # stderr goes to a file, not a pipe: nobody reads it while the server runs, and a full pipe would block it.
    with tempfile.TemporaryFile(mode="w+", prefix="nmig-emulator-stderr-") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "nmig", "emulate", kind, *options],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=cwd,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            if not line:
                process.wait(timeout=30)
                stderr.seek(0)
                raise RuntimeError(f"the {kind} emulator did not start: {stderr.read()[-2000:]}")
            yield EmulatorProcess(process, json.loads(line))
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def access_token(url: str, api_token: str) -> str:
    """A bearer access token for `api_token` from the emulator at `url`; raises HTTPError when refused."""
    exchange = urllib.request.Request(url + OAUTH_TOKEN_PATH, headers={"X-Neptune-Api-Token": api_token})
    with urllib.request.urlopen(exchange, timeout=30) as answer:
        return str(json.load(answer)["accessToken"])


def bearer_headers(url: str, api_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token(url, api_token)}"}
