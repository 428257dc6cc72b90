"""Loopback emulators of Neptune 2.x (`legacy`) and 3.x (`neptune3`) that the unmodified clients use.

Public API: `serve_legacy` (nmig.emulators.legacy) and `serve_neptune3` (nmig.emulators.neptune3), each a
context manager giving an `EmulatorInfo`; `print_and_wait(info)` prints its ready line and serves until
SIGINT/SIGTERM (what `nmig emulate` does). Tests damage a stopped 3.x emulator's data through
nmig.emulators.neptune3.testing.
"""

from nmig.emulators.http import EmulatorInfo, print_and_wait

__all__ = ["EmulatorInfo", "print_and_wait"]
