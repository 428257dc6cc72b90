"""The `nmig` command line: parse options, call the library, print. No migration logic lives here."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

from nmig import __version__
from nmig.errors import NmigError
from nmig.secrets import redact


def friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn NmigError into one line on stderr and its exit code; never print a token."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except NmigError as exc:
            click.echo(f"nmig: error: {redact(str(exc))}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("nmig: interrupted; re-run the same command to resume", err=True)
            sys.exit(130)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="nmig")
def main() -> None:
    """Migrate Neptune Legacy (2.x) projects to Neptune 3.x in two phases.

    `nmig export` reads a 2.x project into a bundle on disk; `nmig import` replays the bundle into 3.x,
    possibly on another machine and days later; `nmig verify` proves the result. `nmig demo` rehearses the
    whole path against loopback emulators of both services.
    """


@main.group()
def emulate() -> None:
    """Loopback emulators of Neptune 2.x and 3.x for rehearsals and tests (127.0.0.1 only)."""


if __name__ == "__main__":
    main()
