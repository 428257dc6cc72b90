"""Series pages decoded into Arrow columns: bit-exact floats, the API's NaN/Infinity tokens, both decoders."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq
import pytest

from nmig.exporter.pages import ARROW_MIN_BYTES, PageError, _decode_arrow, _decode_python, decode_value_page


def _body(points: list[dict], total: int | None = None) -> bytes:
    # allow_nan: the 2.x API sends bare NaN / Infinity tokens, as json.dumps does here
    return json.dumps({"totalItemCount": len(points) if total is None else total, "values": points}).encode()


def _bits(array: pa.Array) -> np.ndarray:
    return array.to_numpy(zero_copy_only=False).view(np.uint64)


def test_floats_are_bit_exact_through_both_decoders() -> None:
    rng = np.random.default_rng(7)
    raw = rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64)
    values = np.concatenate(
        [raw[np.isfinite(raw)], [0.1, 1 / 3, -0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308]]
    )
    steps = rng.random(len(values)) * 1e18
    points = [
        {"step": s, "timestampMillis": 1_700_000_000_000 + i, "value": v}
        for i, (s, v) in enumerate(zip(steps.tolist(), values.tolist(), strict=True))
    ]
    body = _body(points)
    assert len(body) > ARROW_MIN_BYTES
    for decode in (_decode_arrow, _decode_python):
        page = decode(body, "float")
        assert np.array_equal(_bits(page.values), values.view(np.uint64))
        assert np.array_equal(_bits(page.steps), steps.view(np.uint64))
        assert page.timestamps.to_pylist()[:2] == [1_700_000_000_000, 1_700_000_000_001]
        assert page.total == len(points)


def test_non_finite_tokens_and_integer_numbers() -> None:
    points = [
        {"step": 0, "timestampMillis": 5, "value": math.nan},
        {"step": 1, "timestampMillis": 6, "value": math.inf},
        {"step": 2, "timestampMillis": 7, "value": -math.inf},
        {"step": 3, "timestampMillis": 8, "value": 4},
    ]
    filler = [{"step": 4 + i, "timestampMillis": 9, "value": 0.5} for i in range(2_000)]
    for body in (_body(points), _body(points + filler)):  # the json path and the Arrow path
        page = decode_value_page(body, "float")
        head = page.values.to_pylist()[:4]
        assert math.isnan(head[0]) and head[1:] == [math.inf, -math.inf, 4.0]
        assert page.steps.to_pylist()[:4] == [0.0, 1.0, 2.0, 3.0]
    as_strings = [{"step": 0.5, "timestampMillis": 1, "value": word} for word in ("NaN", "Infinity", "-Infinity")]
    read = decode_value_page(_body(as_strings), "float").values.to_pylist()
    assert math.isnan(read[0]) and read[1:] == [math.inf, -math.inf]


def test_string_pages_keep_unicode_and_fall_back_on_what_arrow_refuses() -> None:
    points = [{"step": float(i), "timestampMillis": i, "value": f"línea {i} ✓ \"q\" \\ \n"} for i in range(3_000)]
    page = decode_value_page(_body(points), "string")
    assert page.values.to_pylist() == [p["value"] for p in points]
    empty = decode_value_page(_body([{"step": 1.0, "timestampMillis": 1, "value": ""}]), "string")
    assert empty.values.to_pylist() == [""]
    # a lone surrogate: Arrow refuses the page, the json fallback reads it, and since no UTF-8 file can hold
    # it the page is refused with a reason (the attribute becomes an error), never silently altered
    hostile = points + [{"step": 9e9, "timestampMillis": 1, "value": "a\ud800b"}]
    with pytest.raises(PageError, match="surrogates"):
        decode_value_page(_body(hostile), "string")


def test_pages_missing_steps_or_totals_are_refused() -> None:
    with pytest.raises(PageError):
        decode_value_page(_body([{"timestampMillis": 1, "value": 1.0}]), "float")
    with pytest.raises(PageError):
        decode_value_page(b'{"values": []}', "float")
    assert len(decode_value_page(b'{"totalItemCount": 0}', "float")) == 0


def _hostile_floats(rng: np.random.Generator, n: int) -> np.ndarray:
    raw = rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)
    values = np.where(np.isfinite(raw), raw, 0.5)
    # integral values of every size the emulator formats as integers, and a few it must leave to repr
    whole = np.trunc(rng.standard_normal(len(values[::7])) * 10.0 ** rng.integers(0, 16, len(values[::7])))
    values[::7] = whole + 0.0  # + 0.0: no -0.0 here, the fast path must see negative and zero integral values
    values[1::13] = rng.random(len(values[1::13])) * 10.0 ** rng.integers(-320, 300, len(values[1::13]))
    return values


def test_emulator_float_pages_read_back_bit_exact_through_the_client(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The legacy emulator's fast page formatting (Arrow) against the real client: every value and step comes back
    bit for bit, every number is a JSON float (never an integer), and pages holding -0.0, huge integral values or
    non-finite values (formatted the slow way) are exact too."""
    from exporter_helpers import PROJECT, WORKSPACE, export, make_project, serving

    from nmig.exporter.source import LegacySource
    rng = np.random.default_rng(11)
    n = 30_000
    values = _hostile_floats(rng, n)
    values[12_345] = -0.0  # the second page goes the slow way
    values[25_000] = 2.0**60
    values[29_999] = math.inf
    steps_integral = np.arange(n, dtype=np.float64) * 3.0 - 4.0
    steps_fractional = np.cumsum(rng.random(n)) - 1.0
    stamps = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 7
    plain = np.abs(rng.random(n)) + 0.25  # no integral value at all
    small_mixed = plain * 1e6
    small_mixed[::5] = np.trunc(small_mixed[::5]) - 500_000.0  # integral values, negative ones too, all < 2**53
    series = {
        "m/hostile": (steps_integral, values),
        "m/fractional_steps": (steps_fractional, values[::-1].copy()),
        "m/plain": (steps_fractional, plain),
        "m/small_mixed": (steps_integral, small_mixed),
    }
    attributes = {
        path: {"type": "floatSeries", "steps": s, "values": v, "timestamps": stamps} for path, (s, v) in series.items()
    }
    with serving(make_project([{"attributes": attributes}], models=False)) as info:
        with LegacySource(f"{WORKSPACE}/{PROJECT}", info.api_token, quiet=True) as source:
            ref = source.list_entities("run", None, False)[0]
            for path in series:
                body = source.call_raw(
                    "leaderboard_client", "getFloatSeriesValues",
                    experimentId=ref.container_id, attribute=path, offset=0, limit=10_000,
                )
                points = json.loads(body)["values"]
                assert len(points) == 10_000
                words = ("NaN", "Infinity", "-Infinity")  # how the API sends non-finite values
                assert all(type(p["step"]) is float for p in points), path
                assert all(type(p["value"]) is float or p["value"] in words for p in points), path
        result = export(info, tmp_path / "b", page_size=10_000)
    assert not result.failed, result.failed
    table = pq.read_table(tmp_path / "b" / "runs" / "VIS-1" / "series_float.parquet")
    for path, (s, v) in series.items():
        rows = table.filter(pa.compute.equal(table["path"].cast(pa.string()), path))
        assert np.array_equal(rows["step"].to_numpy().view(np.uint64), s.view(np.uint64)), path
        assert np.array_equal(rows["value"].to_numpy().view(np.uint64), v.view(np.uint64)), path
        assert np.array_equal(rows["timestamp"].cast(pa.int64()).to_numpy(), stamps), path
