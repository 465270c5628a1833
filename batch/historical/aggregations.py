"""Windowed aggregations offline (semantics.md 2), shared by the DuckDB and Spark engines.

Engines compute, per request row and per input column, plain SQL aggregates that are
exact in any engine: count, min, max, count(DISTINCT), and integer sums of *limbs*.
This module turns those into feature values with `featureline.semantics`.

Windows as tiles plus a head
----------------------------
The window [start(t), t] is tile-aligned at its tail, so it is the whole tiles
[start(t), floor(t/s)*s) plus the head [floor(t/s)*s, t] of the row's own tile. The
engines aggregate each view's events once per (key, tile), join every request row to
the w/s tiles of its window on (key, tile) equality, and add the head's events: the
work per row is w/s + the events of one tile, not the events of the whole window (or,
with a plain range join, all events of the key). count(DISTINCT) uses the distinct
values per (key, tile) the same way.

Exact float sums through integer limbs
--------------------------------------
A float64 is mant * 2**exp with a 53-bit integer mantissa. Over one column, with
`base` = the smallest exp of its non-zero values, every value is an integer
mant * 2**(exp - base) ("relative units"), split into 32-bit limbs. A window's sum of
limb i over its events (an int64 sum in SQL: < 2**32 per value, so exact for fewer
than 2**31 events) recombines as sum_i S_i * 2**(32 i) into the exact sum in relative
units, and `<< (base + 1074)` into `semantics.exact_units` units. Rounding that once
with `semantics.units_to_float` / `units_mean` gives bit-identical results to the
semantics reference (and to math.fsum for sums). Money-like data (0.01 .. 1e5) needs
3 limbs; the worst case (the whole float64 range) 66.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.errors import BadInputError
from featureline.semantics import US, units_mean, units_to_float

LIMB_BITS = 32
_LIMB_MASK = np.uint64((1 << LIMB_BITS) - 1)
_FRAC_MASK = np.uint64((1 << 52) - 1)
_IMPLICIT_BIT = np.uint64(1 << 52)
_EXP_ALL_ONES = 0x7FF  # inf / nan
_MIN_EXP = -1074  # exponent of the smallest subnormal's unit


@dataclass(frozen=True)
class LimbLayout:
    """How one column's values are split into limbs: value units are 2**base."""

    base: int
    count: int

    @staticmethod
    def empty() -> LimbLayout:
        return LimbLayout(base=0, count=0)

    def merge(self, other: LimbLayout) -> LimbLayout:
        """The layout covering both (for engines that see a column in batches)."""
        if self.count == 0:
            return other
        if other.count == 0:
            return self
        base = min(self.base, other.base)
        top = max(self.base + self.count * LIMB_BITS, other.base + other.count * LIMB_BITS)
        return LimbLayout(base=base, count=-(-(top - base) // LIMB_BITS))


def _float_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(negative, mantissa uint64, exponent int64, finite) of float64 values."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    exp_field = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    frac = bits & _FRAC_MASK
    normal = exp_field != 0
    mant = np.where(normal, frac | _IMPLICIT_BIT, frac)
    exp = np.where(normal, exp_field - 1075, _MIN_EXP)
    return negative, mant, exp, exp_field != _EXP_ALL_ONES


def numeric_values(column: pa.Array | pa.ChunkedArray, name: str) -> np.ndarray:
    """A numeric column as float64 with null and NaN as NaN (both are skipped).

    Integers go through float64 exactly as semantics' `float(value)` does (round to
    nearest). Infinite values have no exact sum: rejected, naming the column.
    """
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        raise BadInputError(f"column {name!r} of type {column.type} cannot be summed")
    values = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    values = np.asarray(values, dtype=np.float64)
    if np.isinf(values).any():
        raise BadInputError(f"column {name!r} holds infinite values; their sum is undefined")
    return values


def limb_layout(values: np.ndarray) -> LimbLayout:
    """The smallest layout holding every finite non-zero value of `values`."""
    _, mant, exp, finite = _float_parts(values)
    used = finite & (mant != 0)
    if not used.any():
        return LimbLayout.empty()
    base = int(exp[used].min())
    top = int(exp[used].max()) + 53
    return LimbLayout(base=base, count=-(-(top - base) // LIMB_BITS))


def limbs(values: np.ndarray, layout: LimbLayout) -> list[np.ndarray]:
    """Signed int64 limbs of each value (all zero for NaN); sum them per window."""
    negative, mant, exp, finite = _float_parts(values)
    usable = finite & (mant != 0)
    rel = np.where(usable, exp - layout.base, 0)
    out = []
    for i in range(layout.count):
        shift = rel - LIMB_BITS * i
        left = np.clip(shift, 0, 63).astype(np.uint64)
        right = np.clip(-shift, 0, 63).astype(np.uint64)
        part = np.where(shift >= 0, (mant << left) & _LIMB_MASK, (mant >> right) & _LIMB_MASK)
        # A shift of 32+ moves every bit above this limb; 53+ right moves them all below.
        part = np.where((shift >= LIMB_BITS) | (shift <= -53) | ~usable, 0, part)
        signed = part.astype(np.int64)
        out.append(np.where(negative, -signed, signed))
    return out


def units_from_limb_sums(sums: list[int], layout: LimbLayout) -> int:
    """Exact sum in semantics' 2**-1074 units from per-limb sums."""
    rel = 0
    for i, s in enumerate(sums):
        rel += int(s) << (LIMB_BITS * i)
    shift = layout.base - _MIN_EXP
    return rel << shift if rel >= 0 else -((-rel) << shift)


def window_starts_us(t_us: np.ndarray, window_s: int, tile_s: int) -> np.ndarray:
    """Vectorized `semantics.window_start_us`: floor((t - w) / s) * s."""
    size = np.int64(tile_s * US)
    return ((t_us - np.int64(window_s * US)) // size) * size


def tile_starts_us(ts_us: np.ndarray, tile_s: int) -> np.ndarray:
    """Vectorized `semantics.tile_start_us`: floor(ts / s) * s."""
    size = np.int64(tile_s * US)
    return (ts_us // size) * size


def sum_values(limb_sums: list[np.ndarray], layout: LimbLayout, n: int) -> pa.Array:
    """Per-row sums (0.0 for an empty window) from per-row limb sums."""
    out = np.zeros(n, dtype=np.float64)
    if layout.count:
        cols = [s.tolist() for s in limb_sums]
        for row in range(n):
            out[row] = rounded_sum(_relative(cols, row), layout.base, None)
    return pa.array(out, type=pa.float64())


def mean_values(limb_sums: list[np.ndarray], counts: np.ndarray, layout: LimbLayout) -> pa.Array:
    """Per-row means (null for an empty window) from limb sums and counts."""
    cols = [s.tolist() for s in limb_sums]
    result: list[float | None] = []
    for row, count in enumerate(counts.tolist()):
        rel = _relative(cols, row) if layout.count else 0
        result.append(None if count == 0 else rounded_sum(rel, layout.base, int(count)))
    return pa.array(result, type=pa.float64())


def _relative(cols: list[list[int]], row: int) -> int:
    rel = 0
    for i, col in enumerate(cols):
        rel += col[row] << (LIMB_BITS * i)
    return rel


# Results at or above 2**-1021 are normal floats: scaling them by a power of two is exact.
_NORMAL_EXP = -1021


def rounded_sum(rel: int, base: int, count: int | None) -> float:
    """rel * 2**base (divided by count), rounded once to float64, bit-identical to
    semantics.units_to_float / units_mean.

    Fast path (~0.3 us): Python's float(int) and int / int are correctly rounded (ties to
    even), and ldexp by 2**base is exact while the result stays a normal float; so the
    result is the same single rounding. Near the subnormal range or float overflow, the
    semantics functions decide.
    """
    if rel == 0:
        return 0.0
    try:
        quotient = float(rel) if count is None else rel / count
        value = math.ldexp(quotient, base)
        if math.isfinite(value) and math.frexp(value)[1] - 1 >= _NORMAL_EXP:
            return value
    except OverflowError:
        pass
    units = rel << (base - _MIN_EXP) if rel >= 0 else -((-rel) << (base - _MIN_EXP))
    try:
        if count is None:
            return units_to_float(units)
        mean = units_mean(units, count)
        assert mean is not None
        return mean
    except OverflowError:
        raise BadInputError(
            "a windowed sum overflows float64 (values near 1.8e308); it has no float value"
        ) from None
