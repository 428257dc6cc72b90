"""Peak memory of a process, as the benchmarks report it.

VmHWM (the high-water mark of the process's own address space), never ru_maxrss: Linux carries ru_maxrss over
from the parent across fork and exec, so a child of a large process would report the parent's size.
"""

from __future__ import annotations

from pathlib import Path


def peak_rss_bytes(pid: int | str = "self") -> int | None:
    """VmHWM of `pid` in bytes; None once the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in text.splitlines() if x.startswith("VmHWM:")), None)
    return int(line.split()[1]) * 1024 if line else None


def peak_rss_mb(pid: int | str = "self") -> int:
    return (peak_rss_bytes(pid) or 0) // (1024 * 1024)
