"""A legacy workspace of three small projects for the workspace-root tests (conftest.py puts this folder on
sys.path)."""

from __future__ import annotations

from typing import Any

WORKSPACE = "acme"
PROJECTS = ("audio", "text-nlp", "vision")
T0 = 1_700_000_000_000  # epoch ms


def _run(project: str, n: int) -> dict[str, Any]:
    return {
        "attributes": {
            "sys/name": {"type": "string", "value": f"{project} run {n}"},
            "params/lr": {"type": "float", "value": 0.01 * n},
            "metrics/loss": {
                "type": "floatSeries",
                "steps": [float(i) for i in range(5)],
                "values": [1.0 / (i + n) for i in range(5)],
                "timestamps": [T0 + 10 * i for i in range(5)],
            },
        }
    }


def workspace_fixture() -> dict[str, Any]:
    """Three projects of two runs each (no models), keys and descriptions of their own."""
    return {
        "fixture_version": 1,
        "workspace": WORKSPACE,
        "projects": [
            {
                "name": name,
                "key": name[:3].upper(),
                "visibility": "priv",
                "description": f"the {name} project",
                "runs": [_run(name, n) for n in (1, 2)],
            }
            for name in PROJECTS
        ],
    }


def invoke(*args: str) -> Any:
    """`nmig ...` in-process through click's runner, with no token or project from the environment."""
    from click.testing import CliRunner

    from nmig.cli import main

    env = {"NEPTUNE_API_TOKEN": "", "NEPTUNE_PROJECT": "", "NEPTUNE_LEGACY_API_TOKEN": ""}
    return CliRunner().invoke(main, list(args), env=env)
