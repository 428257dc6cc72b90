"""Writing and reading a 10,000,000-point series stays within a bounded memory footprint."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 500

_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from nmig.schema import Bundle, EntityWriter, write_export_info
    out = sys.argv[1]
    write_export_info(out, {})
    points, page = 10_000_000, 10_000
    with EntityWriter(out, "run", "BIG-1") as run:
        for start in range(0, points, page):
            steps = np.arange(start, start + page, dtype=np.float64)
            run.add_float_points("metrics/loss", steps, steps * 0.5, (steps * 10).astype(np.int64))
    rows, last = 0, None
    for batch in Bundle(out).entity("run", "BIG-1").iter_series("float"):
        rows += batch.num_rows
        last = batch.column("step")[batch.num_rows - 1].as_py()
    from benchmarks.rss import peak_rss_mb  # VmHWM: this process's own peak, whatever its parent's size
    print(rows, last, peak_rss_mb())
""")


@pytest.mark.slow
def test_ten_million_points_in_bounded_memory(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}  # the repository root: the script reads its peak with benchmarks.rss
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(tmp_path / "b")], capture_output=True,
                            text=True, timeout=240, env=env, check=True)
    rows, last, peak_mb = result.stdout.split()
    assert int(rows) == 10_000_000 and float(last) == 9_999_999.0
    print(f"10,000,000 float points written and read back; peak RSS {peak_mb} MB (limit {LIMIT_MB} MB)")
    assert int(peak_mb) < LIMIT_MB, f"peak RSS {peak_mb} MB"
