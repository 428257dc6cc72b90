"""The export child of `nmig migrate` dies with its parent, even when the parent is killed by kill -9: an
orphaned export would otherwise go on writing into the bundle while a re-run starts another one there.

The parent names itself in the child's environment (DIE_WITH_PARENT_ENV); the child, first thing
at its start, asks Linux for SIGKILL on its parent's death (prctl PR_SET_PDEATHSIG, linux/prctl.h: 1), then
checks the parent is still the one named: one that died before the request was made is not signalled.
Elsewhere than Linux nothing is done (the orphan then finishes its export, which a re-run resumes).
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
DIE_WITH_PARENT_ENV = "NMIG_DIE_WITH_PARENT"


def die_with_named_parent() -> None:
    parent = os.environ.pop(DIE_WITH_PARENT_ENV, None)  # not inherited further (the client's own children)
    if not parent or not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the parent died before the request: nothing will signal us
        os._exit(1)
