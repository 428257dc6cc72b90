"""Errors that the command line turns into one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class NmigError(Exception):
    """A failure the user can act on. The message is shown as is, so it must never contain a token."""

    exit_code = 2


class PartialFailure(NmigError):
    """The command finished, but some items could not be processed; the report lists which and why."""

    exit_code = 1


# C0 and C1 controls, DEL, and the bidirectional overrides that can make a terminal line read differently
# from what it holds: names from a bundle or a server are shown escaped, never obeyed by the terminal.
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0)] if c not in (0x09,)}
_UNSAFE.update({c: f"\\u{c:04x}" for c in [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]})


def printable(line: str) -> str:
    """`line` with every control character (newlines included) shown as an escape: safe to print as one line."""
    return line.translate(_UNSAFE)
