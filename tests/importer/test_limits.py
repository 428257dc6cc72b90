"""The 3.x limits rules on plain data."""

from __future__ import annotations

import numpy as np

from nmig.importer import limits


def test_long_path_is_shortened_deterministically_within_the_limit() -> None:
    path = "a/" + "é" * 700  # 1,402 bytes
    short = limits.fit_attribute_path(path)
    assert len(short.encode("utf-8")) <= limits.MAX_ATTRIBUTE_PATH_BYTES
    assert short == limits.fit_attribute_path(path)
    assert short.startswith("a/é") and "~" in short
    other = limits.fit_attribute_path(path + "x")
    assert other != short
    assert limits.fit_attribute_path("ok/path") == "ok/path"
    exact = "p" * 1024
    assert limits.fit_attribute_path(exact) == exact


def test_run_id_fits_the_client() -> None:
    assert limits.fit_run_id("VIS-12") == "VIS-12"
    assert limits.fit_run_id("a/b") == "a_b"
    long_id = "x" * 800
    fitted = limits.fit_run_id(long_id)
    assert len(fitted.encode()) <= limits.MAX_RUN_ID_BYTES
    assert fitted == limits.fit_run_id(long_id)


def test_string_value_cut_on_a_character_boundary() -> None:
    value = "ż" * (limits.MAX_STRING_SERIES_VALUE_BYTES // 2 + 10)
    cut = limits.fit_string_value(value)
    assert len(cut.encode("utf-8")) <= limits.MAX_STRING_SERIES_VALUE_BYTES
    assert value.startswith(cut)
    small = "hello"
    assert limits.fit_string_value(small) is small


def test_step_micros_is_the_whole_part_then_the_rounded_fraction() -> None:
    steps = [0.0, 1.0, 1.5, 2.0000004, 2.0000006, 0.1 + 0.2, 123456.654321, 999999.9999999, 7.654321]
    want = [0, 1_000_000, 1_500_000, 2_000_000, 2_000_001, 300_000, 123_456_654_321, 1_000_000_000_000, 7_654_321]
    assert limits.step_micros(np.array(steps)).tolist() == want


def test_large_steps_are_exact_where_the_clients_arithmetic_is_not() -> None:
    from neptune_scale.sync.metadata_splitter import decompose_step

    # the shifts issue 10 measured through neptune-scale 0.30's decompose_step
    assert decompose_step(999999999999.0) == (999999999999, 64)
    assert decompose_step(2.0**39 + 0.25) == (2**39, 249984)
    big = np.array([999999999999.0, 2.0**39 + 0.25, 1e9 + 0.5, 123456789012.375, 1e10 + 0.1, 5e11 + 0.000122])
    micros = limits.step_micros(big)
    assert micros.tolist()[:4] == [999_999_999_999_000_000, 2**39 * 1_000_000 + 250_000, 1_000_000_000_500_000,
                                   123_456_789_012_375_000]
    # a step 3.x can hold (6 decimals; every float from 2**33 up has no more) maps back to itself: the float
    # 3.x serves (whole + micro / 1e6) is the float that was sent
    rng = np.random.default_rng(3)
    sample = np.concatenate([
        big,
        rng.uniform(2.0**33, 1e12, 20_000),
        rng.integers(10**9, 10**12, 2_000).astype(np.float64),
        (rng.integers(10**9, 10**12, 2_000) + rng.integers(0, 1000, 2_000) / 1000),
        rng.uniform(0, 1e4, 2_000).round(6),
    ])
    back = np.array([limits.step_of_micros(m) for m in limits.step_micros(sample).tolist()])
    assert (back == sample).all()
    # and any step (finer ones are rounded to 6 decimals, as documented) keeps its micro-units when read back
    finer = rng.uniform(1e9, 2.0**33, 5_000)
    again = np.array([limits.step_of_micros(m) for m in limits.step_micros(finer).tolist()])
    assert (limits.step_micros(again) == limits.step_micros(finer)).all()


def test_filter_keeps_first_point_per_step_and_drops_out_of_range() -> None:
    series = limits.SeriesFilter()
    steps = np.array([-1.0, 0.0, 1.0, 1.0000001, 2.0, 1.5, 1e12, 3.0])
    ts = np.array([10, 20, 30, 40, 50, 60, 70, 80])
    keep, micros, new_ts = series.apply(steps, ts)
    assert keep.tolist() == [False, True, True, False, True, False, False, True]
    adj = series.adjustments
    assert (adj.out_of_range, adj.first_out_of_range_step) == (2, -1.0)
    assert (adj.same_step, adj.first_same_step) == (2, 1.0000001)
    # state carries to the next batch: a step equal to the last one is a collision
    keep2, _, _ = series.apply(np.array([3.0, 4.0]), np.array([90, 100]))
    assert keep2.tolist() == [False, True]
    assert adj.same_step == 3
    cases = dict(adj.events())
    assert set(cases) == {"step_out_of_range", "step_collision"}


def test_filter_raises_decreasing_timestamps_to_the_previous_one() -> None:
    series = limits.SeriesFilter()
    keep, _, ts = series.apply(np.array([1.0, 2.0, 3.0]), np.array([100, 50, 200]))
    assert keep.all()
    assert ts.tolist() == [100, 100, 200]
    _, _, ts2 = series.apply(np.array([4.0]), np.array([150]))
    assert ts2.tolist() == [200]
    assert series.adjustments.timestamps_raised == 2


def test_filter_on_resume_sends_only_points_beyond_what_the_target_holds() -> None:
    series = limits.SeriesFilter(resume_after_micros=2_000_000)
    keep, _, _ = series.apply(np.array([1.0, 2.0, 2.0, 3.0]), np.array([1, 2, 3, 4]))
    assert keep.tolist() == [False, False, False, True]
    # the collision at step 2 is still reported: the report describes the whole series
    assert series.adjustments.same_step == 1


def test_fit_values_counts_cuts() -> None:
    series = limits.SeriesFilter()
    big = "x" * (limits.MAX_STRING_SERIES_VALUE_BYTES + 1)
    out = series.fit_values(["a", big], np.array([1.0, 2.0]))
    assert out[0] == "a" and len(out[1]) == limits.MAX_STRING_SERIES_VALUE_BYTES
    assert (series.adjustments.values_cut, series.adjustments.first_cut_step) == (1, 2.0)
