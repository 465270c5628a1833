"""The value rules of shared/semantics.md, pinned on plain values."""

from __future__ import annotations

import math
import random
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from featureline import aggregations as agg
from featureline import semantics as sem
from featureline.aggregations import AggState, exact_units, parts_of
from featureline.semantics import US


@pytest.mark.parametrize(
    ("window_s", "slide_s", "expected"),
    [
        (600, 600, 300),  # Feast default slide == window -> default resolution
        (600, None, 300),
        (12 * 3600 - 1, 0, 300),
        (12 * 3600, 12 * 3600, 3600),  # 12 h is not "under 12 h"
        (86400, 86400, 3600),
        (12 * 86400, None, 86400),
        (3600, 60, 60),  # slide smaller than window wins
        (3600, 7200, 300),  # slide not smaller than window -> default
    ],
)
def test_tile_size(window_s: int, slide_s: int | None, expected: int) -> None:
    assert sem.tile_size_s(window_s, slide_s) == expected


def test_window_start_is_tile_aligned_floor() -> None:
    t = 1_700_000_123 * US + 456
    start = sem.window_start_us(t, 600, 300)
    assert start % (300 * US) == 0
    assert t - (600 + 300) * US < start <= t - 600 * US
    # exact boundary: t - w on a tile edge gives start == t - w
    edge = 1_700_000_100 * US
    assert sem.window_start_us(edge + 600 * US, 600, 300) == edge
    # before 1970 floors downwards too
    assert sem.window_start_us(-1, 600, 300) == -900 * US


def test_in_window_head_exact_tail_aligned() -> None:
    t = 1_700_000_123 * US
    start = sem.window_start_us(t, 600, 300)
    assert sem.in_window(t, t, 600, 300)
    assert not sem.in_window(t + 1, t, 600, 300)
    assert sem.in_window(start, t, 600, 300)
    assert not sem.in_window(start - 1, t, 600, 300)


def test_exact_sum_is_order_independent_and_correctly_rounded() -> None:
    rng = random.Random(7)
    values = [rng.uniform(-1e9, 1e9) for _ in range(2000)] + [1e-300, 1e300, -1e300, 0.1] * 3
    forward = sum(agg.exact_units(v) for v in values)
    rng.shuffle(values)
    backward = sum(agg.exact_units(v) for v in values)
    assert forward == backward
    assert agg.units_to_float(forward) == math.fsum(values)
    assert agg.units_to_float(agg.exact_units(5e-324)) == 5e-324


def test_mean_is_exact_sum_over_count() -> None:
    vals = [0.1, 0.2, 0.3]
    units = sum(agg.exact_units(v) for v in vals)
    assert agg.units_mean(units, 3) == float(sum(Fraction(v) for v in vals) / 3)
    assert agg.units_mean(0, 0) is None


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("count", 0),
        ("sum", 0.0),
        ("mean", None),
        ("min", None),
        ("max", None),
        ("count_distinct", 0),
    ],
)
def test_empty_window_values(function: str, expected: object) -> None:
    assert agg.empty_value(function) == expected
    assert agg.aggregate([None, None], function) == expected


def test_aggregates_skip_nulls() -> None:
    vals = [3.0, None, 1.0, 3.0, float("nan")]
    assert agg.aggregate(vals, "count") == 3
    assert agg.aggregate(vals, "sum") == 7.0
    assert agg.aggregate(vals, "mean") == 7.0 / 3
    assert agg.aggregate(vals, "min") == 1.0
    assert agg.aggregate(vals, "max") == 3.0
    assert agg.aggregate(vals, "count_distinct") == 2
    with pytest.raises(ValueError, match="unknown aggregation"):
        agg.aggregate(vals, "median")


def test_merge_equals_single_pass() -> None:
    rng = random.Random(3)
    vals = [rng.choice([None, rng.uniform(-5, 5)]) for _ in range(500)]
    every = parts_of(agg.AGG_FUNCTIONS)
    whole = AggState()
    for v in vals:
        whole.add(v, parts=every)
    parts = [AggState() for _ in range(7)]
    for i, v in enumerate(vals):
        parts[i % 7].add(v, parts=every)
    merged = AggState()
    for p in reversed(parts):
        merged.merge(p)
    for fn in agg.AGG_FUNCTIONS:
        assert merged.result(fn) == whole.result(fn), fn


def test_latest_order_and_ttl() -> None:
    assert sem.latest_order_key(10, 5) > sem.latest_order_key(10, 4)
    assert sem.latest_order_key(10, 0) > sem.latest_order_key(10, None)
    assert sem.latest_order_key(11, None) > sem.latest_order_key(10, 99)
    t = 1_000 * US
    assert sem.within_ttl(t - 100 * US, t, 100)  # exactly at t - ttl: inside
    assert not sem.within_ttl(t - 100 * US - 1, t, 100)  # 1 us outside
    assert sem.within_ttl(t, t, 100)
    assert not sem.within_ttl(t + 1, t, 100)  # future rows never count
    assert sem.within_ttl(0, t, 0)  # ttl 0: no lower bound


@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20))
def test_tile_sum_codec_round_trips_exactly(values: list[float]) -> None:
    """A tile's exact sum survives encode/decode bit for bit, in the compact form, and
    tiles written in the earlier plain-hex form still decode to the same integer."""
    from featureline.online.tiles import decode_units, encode_units

    units = sum(exact_units(v) for v in values)
    text = encode_units(units)
    assert decode_units(text) == units
    assert len(text) <= len(format(abs(units), "x")) + 7  # never much longer than plain hex
    assert decode_units(format(units, "x")) == units


def test_tile_sum_codec_is_compact() -> None:
    from featureline.online.tiles import decode_units, encode_units

    units = exact_units(12.5) + exact_units(33.1) + exact_units(7.25)
    assert len(format(units, "x")) > 250  # the earlier form
    assert len(encode_units(units)) < 25
    assert encode_units(0) == "0" and decode_units("0") == 0
    neg = -exact_units(5e-324)  # the smallest subnormal, negated
    assert decode_units(encode_units(neg)) == neg


_tile_values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False, width=32))


@given(st.lists(st.lists(_tile_values, max_size=6), max_size=6))
def test_merge_entries_equals_aggstate_merge(tiles: list[list[float | None]]) -> None:
    """Serving's merge of stored tile entries (featureline.online.tiles.merge_entries)
    gives exactly the AggState that decoding each tile and AggState.merge would."""
    from featureline.online.tiles import decode_tile, decode_tile_entries, encode_tile, merge_entries

    every = parts_of(agg.AGG_FUNCTIONS)  # sums of squares too (stored after the five items)
    raws = []
    for values in tiles:
        state = AggState()
        for v in values:
            state.add(v, parts=every)
        raws.append(encode_tile({"x": state}))
    expected = AggState()
    for raw in raws:
        expected.merge(decode_tile(raw)["x"])
    entries = [decode_tile_entries(raw)["x"] for raw in raws]
    assert merge_entries(entries, every) == expected
    partial = merge_entries(entries, frozenset({"count"}))
    assert (partial.count, partial.min, partial.max) == (expected.count, expected.min, expected.max)
