"""format.as_numpy: the same values as pyarrow's to_numpy, read from the data buffer (offsets of slices and
every fixed-width type the bundle holds), and no pandas imported on the way."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from nmig.schema.format import as_numpy


@pytest.mark.parametrize(
    "values, type_",
    [
        ([0.0, -0.0, 1e-310, float("nan"), float("inf"), 3.5], pa.float64()),
        ([1.5, -2.25, 3.0], pa.float32()),
        ([-(2**63), 0, 2**63 - 1, 7], pa.int64()),
        ([0, 1, 2, 2**31 - 1], pa.int32()),
        ([2**64 - 1, 0], pa.uint64()),
        ([-62135596800000, 0, 1677664800123], pa.timestamp("ms", tz="UTC")),
    ],
)
def test_the_values_of_an_array_and_of_its_slices_are_pyarrows_own(values: list, type_: pa.DataType) -> None:
    array = pa.array(values, pa.int64()).cast(type_) if pa.types.is_timestamp(type_) else pa.array(values, type_)
    for piece in (array, array.slice(1), array.slice(1, len(array) - 2), array.slice(len(array))):
        expected = piece.cast(pa.int64()).to_numpy(zero_copy_only=False) if pa.types.is_timestamp(type_) else piece.to_numpy(zero_copy_only=False)
        got = as_numpy(piece)
        assert got.dtype == expected.dtype and got.tobytes() == expected.tobytes()  # bit for bit, NaN and -0.0 too


def test_arrays_with_nulls_and_other_types_go_through_pyarrow() -> None:
    with_null = pa.array([1.0, None, 3.0])
    assert np.isnan(as_numpy(with_null)[1]) and as_numpy(with_null)[2] == 3.0
    assert as_numpy(pa.array([True, False])).tolist() == [True, False]  # bit-packed: not read from the buffer
    assert as_numpy(pa.chunked_array([[1, 2], [3]])).tolist() == [1, 2, 3]


def test_reading_a_batch_imports_neither_pandas_nor_pyarrow_compute(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # written here, read in a fresh interpreter as the import reads a bundle's batches
    batch = pa.record_batch(
        [pa.array(["a", "a", "b"]).dictionary_encode(), pa.array([1.0, 2.0, 3.0])], names=["path", "value"]
    )
    path = tmp_path / "batch.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, batch.schema) as writer:
        writer.write_batch(batch)
    code = (
        "import sys, pyarrow as pa; from nmig.schema.format import as_numpy, path_runs; "
        f"b = pa.ipc.open_file({str(path)!r}).get_batch(0); "
        "runs = list(path_runs(b.column(0))); values = as_numpy(b.column(1).slice(1)).tolist(); "
        "print(runs, values, 'pandas' in sys.modules, 'pyarrow.compute' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[('a', 0, 2), ('b', 2, 3)] [2.0, 3.0] False False"
