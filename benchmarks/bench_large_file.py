"""Memory of `nmig import` for one large file: bounded by chunks, not by the file.

A bundle with one run holding one file of --gib GiB is imported into the 3.x emulator (aws: S3 multipart, parts
of 16 MiB) by a child process whose peak RSS (VmHWM) is printed; goal: under 500 MB for 2 GiB. The naive path
(neptune-scale's own S3 upload, which reads every part into memory) is measured in the same run on a smaller
file (--naive-mib), as its peak grows with the file.

    .venv/bin/python -m benchmarks.bench_large_file [--gib 2] [--naive-mib 512]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench_import import REPO, emulator

_CHILD = """
import sys, time
from pathlib import Path
from benchmarks.rss import peak_rss_mb
from nmig.importer import upload
if sys.argv[4] == "naive":
    upload.install = lambda: None  # keep the client's own S3 uploads
from nmig.importer.runner import ImportOptions, run_import
start = time.perf_counter()
result = run_import(ImportOptions(bundle_dir=Path(sys.argv[1]), project=sys.argv[3], api_token=sys.argv[2], quiet=True))
assert result.imported and not result.failed and not result.refused, (result.failed, result.refused, result.events[-3:])
print(time.perf_counter() - start, peak_rss_mb())
"""


def _content(size: int) -> Iterator[bytes]:
    """Incompressible-looking content, cheap to make: a counter hashed into each 1 MiB block's head."""
    block = bytearray(hashlib.shake_256(b"nmig").digest(1 << 20))
    made = 0
    index = 0
    while made < size:
        block[:32] = hashlib.sha256(index.to_bytes(8, "little")).digest()
        chunk = bytes(block[: min(len(block), size - made)])
        made += len(chunk)
        index += 1
        yield chunk


class _Stream:
    def __init__(self, size: int) -> None:
        self._chunks = _content(size)
        self._left = b""

    def read(self, n: int = -1) -> bytes:
        while len(self._left) < (n if n >= 0 else 1 << 62):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._left += chunk
        out, self._left = (self._left, b"") if n < 0 else (self._left[:n], self._left[n:])
        return out


def file_bundle(out: Path, size: int) -> None:
    from nmig.schema import EntityWriter, write_export_info

    write_export_info(out, {"source": {"workspace": "legacy", "project": "bench"}})
    with EntityWriter(out, "run", "BIG-1") as run:
        run.add_atom("sys/id", "string", "BIG-1")
        run.add_atom("sys/creation_time", "datetime", "2024-05-01T12:00:00.000Z")
        run.add_file("model/checkpoint", _Stream(size), name="checkpoint", ext="bin")


def measure(size: int, work: Path, mode: str) -> tuple[float, int]:
    bundle = work / f"bundle-{mode}"
    started = time.perf_counter()
    file_bundle(bundle, size)
    print(f"  (bundle of {size / 2**30:.2f} GiB written in {time.perf_counter() - started:.0f} s)", flush=True)
    with emulator(work / f"emu-{mode}") as info:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(bundle), info["api_token"], f"demo/bench-file-{mode}", mode],
            capture_output=True, text=True, cwd=REPO,
        )
    if out.returncode != 0:
        raise SystemExit(f"import failed: {out.stderr[-2000:]}")
    elapsed, peak = out.stdout.split()[-2:]
    return float(elapsed), int(peak)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gib", type=float, default=2.0, help="size of the file nmig imports (GiB)")
    parser.add_argument("--naive-mib", type=int, default=512, help="size of the file the naive path imports (MiB; 0: skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nmig-bench-file-") as tmp:
        work = Path(tmp)
        size = int(args.gib * 2**30)
        elapsed, peak = measure(size, work, "nmig")
        print(f"nmig import of one {args.gib:g} GiB file: {elapsed:.1f} s, peak RSS {peak} MB (goal < 500 MB)")
        if args.naive_mib:
            naive_size = args.naive_mib * 2**20
            naive_elapsed, naive_peak = measure(naive_size, work, "naive")
            print(f"naive (the client's S3 upload), one {args.naive_mib} MiB file: {naive_elapsed:.1f} s, "
                  f"peak RSS {naive_peak} MB")
            print(f"ratio of peak RSS, naive / nmig: {naive_peak / peak:.1f}x, for a file {size / naive_size:.0f}x "
                  "smaller on the naive path")


if __name__ == "__main__":
    main()
