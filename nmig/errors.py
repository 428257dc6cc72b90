"""Errors that the command line turns into one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations


class NmigError(Exception):
    """A failure the user can act on. The message is shown as is, so it must never contain a token."""

    exit_code = 2


class PartialFailure(NmigError):
    """The command finished, but some items could not be processed; the report lists which and why."""

    exit_code = 1
