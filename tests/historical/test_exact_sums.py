"""The integer-limb sums equal the naive oracle's exact Fraction sums, bit for bit, on
any float64."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle.naive import aggregate, window_start_us

from featureline.aggregations import WindowParts, get
from featureline.batch.historical.aggregations import (
    LimbLayout,
    finalize_rows,
    limb_layout,
    limbs,
    units_from_limb_sums,
    window_starts_us,
    window_sums,
)
from featureline.errors import BadInputError


def _exact(units: int) -> Fraction:
    """A sum in the engines' units (2**-1074, the smallest float64) as an exact number."""
    return Fraction(units, 2**1074)


floats = st.floats(allow_nan=True, allow_infinity=False)
# Sums of up to 48 values this large stay below float64's maximum (semantics raises there).
bounded = st.floats(min_value=-1e306, max_value=1e306) | st.just(math.nan)


@settings(max_examples=300, deadline=None)
@given(st.lists(floats, min_size=0, max_size=30))
def test_limb_sums_are_exact(values: list[float]) -> None:
    array = np.array(values, dtype=np.float64)
    layout = limb_layout(array)
    sums = [int(limb.sum()) for limb in limbs(array, layout)]
    finite = [v for v in values if not math.isnan(v)]
    assert _exact(units_from_limb_sums(sums, layout)) == sum(map(Fraction, finite), Fraction(0))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(bounded, max_size=8), min_size=1, max_size=6))
def test_sum_and_mean_per_row_match_the_oracle(rows: list[list[float]]) -> None:
    """Rows are windows; one layout covers the whole column, as in the engines."""
    column = np.array([v for row in rows for v in row], dtype=np.float64)
    layout = limb_layout(column)
    per_row = [[int(limb.sum()) for limb in limbs(np.array(row, dtype=np.float64), layout)] for row in rows]
    sums = [np.array([r[i] for r in per_row], dtype=np.int64) for i in range(layout.count)]
    counts = np.array([sum(not math.isnan(v) for v in row) for row in rows])
    units = window_sums(sums, layout, len(rows))
    parts = [WindowParts(int(n), {"sum": u}) for n, u in zip(counts, units, strict=True)]
    got_sum = finalize_rows(get("sum"), parts, "t")
    got_mean = finalize_rows(get("mean"), parts, "t")
    for row, s, m in zip(rows, got_sum, got_mean, strict=True):
        assert s.hex() == aggregate(row, "sum").hex()
        want_mean = aggregate(row, "mean")
        assert (m is None and want_mean is None) or m.hex() == want_mean.hex()
        assert s == math.fsum(v for v in row if not math.isnan(v))


def test_a_sum_beyond_float64_is_a_clear_error() -> None:
    column = np.array([1.7e308, 1.7e308])
    layout = limb_layout(column)
    sums = [np.array([limb.sum()]) for limb in limbs(column, layout)]
    parts = [WindowParts(2, {"sum": window_sums(sums, layout, 1)[0]})]
    with pytest.raises(BadInputError, match="overflows"):
        finalize_rows(get("sum"), parts, "t")


def test_layouts_merge_to_cover_both() -> None:
    a = limb_layout(np.array([1e-300, 3.0]))
    b = limb_layout(np.array([1e300]))
    merged = a.merge(b)
    both = np.array([1e-300, 3.0, 1e300])
    assert merged.base <= limb_layout(both).base
    sums = [int(limb.sum()) for limb in limbs(both, merged)]
    assert _exact(units_from_limb_sums(sums, merged)) == sum(map(Fraction, both.tolist()), Fraction(0))
    assert LimbLayout.empty().merge(a) == a


def test_vectorized_window_start_is_the_oracles() -> None:
    t = np.array([-(10**12) - 1, -1, 0, 1, 299_999_999, 300_000_000, 1_709_251_200_123_456], dtype=np.int64)
    for window_s, tile_s in ((600, 300), (3600, 60), (86400, 3600), (7, 5)):
        got = window_starts_us(t, window_s, tile_s).tolist()
        # a slide smaller than the window is the tile size (the oracle resolves it itself)
        assert got == [window_start_us(int(x), window_s, tile_s) for x in t]
