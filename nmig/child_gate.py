"""`nmig migrate` starts its export child before it has tried the 3.x token, so that the child's start-up (an
interpreter, then the neptune client and the exporter: most of a second of CPU) overlaps the parent's round
trips to the 3.x service, and still nothing is exported with a token the 3.x service refuses.

The parent names the gate in the child's environment (GATE_ENV). The child, at its start, loads the exporter,
then waits for one line on its stdin: GO and it goes on with its command; anything else (the parent closed
the pipe: the 3.x token was refused, or the parent died) and it exits with GATED_OFF_STATUS having created,
written and asked for nothing.
"""

from __future__ import annotations

import os
import sys

GATE_ENV = "NMIG_WAIT_FOR_GO"
GO = "go"
GATED_OFF_STATUS = 3


def wait_for_go() -> None:
    if not os.environ.pop(GATE_ENV, None):  # not inherited further
        return
    import nmig.exporter.export  # noqa: F401 - the start-up the gate is there to overlap, the client's included
    from nmig.exporter.source import import_client

    import_client()

    line = sys.stdin.readline()
    if line.strip() != GO:
        os._exit(GATED_OFF_STATUS)
