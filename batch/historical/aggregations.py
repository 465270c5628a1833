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
Each exact sum of featureline.aggregations (a `SumTerm`: the values, ...) gives, per
value, pieces mant * 2**exp with integer mantissas below 2**mant_bits (a float64
value is one piece with a 53-bit mantissa). Over one column and term, with `base` =
the smallest exp of its non-zero pieces, every piece is an integer
mant * 2**(exp - base) ("relative units"), split into 32-bit limbs, and a value's
limbs are the sums of its pieces' limbs (< 2**32 per piece). A window's sum of limb i
over its events (an int64 sum in SQL: exact for fewer than 2**31 / pieces events)
recombines as sum_i S_i * 2**(32 i) into the exact sum in relative units, and
`<< (base + unit_exp)` into the term's exact units. The term's functions finalize
from those (rounded once, featureline.aggregations), bit-identical to the stream and
serving paths (and to math.fsum for sums). Money-like data (0.01 .. 1e5) needs 3
limbs; the worst case (the whole float64 range) 66.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import SUM, SUM_PARTS, AggFunction, Piece, SumTerm, WindowParts
from featureline.errors import BadInputError
from featureline.semantics import US

LIMB_BITS = 32
_LIMB_MASK = np.uint64((1 << LIMB_BITS) - 1)
_MIN_EXP = -1074  # exponent of the smallest subnormal's unit
_PLAIN = SUM_PARTS[SUM]


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


def limb_layout(values: np.ndarray, term: SumTerm = _PLAIN) -> LimbLayout:
    """The smallest layout holding every non-zero piece of `term` over `values`."""
    used = [(mant != 0, exp) for _, mant, exp in term.pieces(values)]
    if not any(u.any() for u, _ in used):
        return LimbLayout.empty()
    base = min(int(exp[u].min()) for u, exp in used if u.any())
    top = max(int(exp[u].max()) for u, exp in used if u.any()) + term.mant_bits
    return LimbLayout(base=base, count=-(-(top - base) // LIMB_BITS))


def limbs(values: np.ndarray, layout: LimbLayout, term: SumTerm = _PLAIN) -> list[np.ndarray]:
    """Signed int64 limbs of each value's term (all zero for NaN); sum them per window."""
    out = [np.zeros(len(values), dtype=np.int64) for _ in range(layout.count)]
    for piece in term.pieces(values):
        for i, limb in enumerate(_piece_limbs(piece, layout)):
            out[i] += limb
    return out


def _piece_limbs(piece: Piece, layout: LimbLayout) -> list[np.ndarray]:
    negative, mant, exp = piece
    usable = mant != 0
    rel = np.where(usable, exp - layout.base, 0)
    out = []
    for i in range(layout.count):
        shift = rel - LIMB_BITS * i
        left = np.clip(shift, 0, 63).astype(np.uint64)
        right = np.clip(-shift, 0, 63).astype(np.uint64)
        part = np.where(shift >= 0, (mant << left) & _LIMB_MASK, (mant >> right) & _LIMB_MASK)
        # A shift of 32+ moves every bit above this limb; 64+ right moves them all below.
        part = np.where((shift >= LIMB_BITS) | (shift <= -64) | ~usable, 0, part)
        signed = part.astype(np.int64)
        out.append(np.where(negative, -signed, signed))
    return out


def units_from_limb_sums(sums: list[int], layout: LimbLayout, term: SumTerm = _PLAIN) -> int:
    """Exact sum in the term's 2**-unit_exp units from per-limb sums."""
    rel = 0
    for i, s in enumerate(sums):
        rel += int(s) << (LIMB_BITS * i)
    shift = layout.base + term.unit_exp
    return rel << shift if rel >= 0 else -((-rel) << shift)


def window_starts_us(t_us: np.ndarray, window_s: int, tile_s: int) -> np.ndarray:
    """Vectorized `semantics.window_start_us`: floor((t - w) / s) * s."""
    size = np.int64(tile_s * US)
    return ((t_us - np.int64(window_s * US)) // size) * size


def tile_starts_us(ts_us: np.ndarray, tile_s: int) -> np.ndarray:
    """Vectorized `semantics.tile_start_us`: floor(ts / s) * s."""
    size = np.int64(tile_s * US)
    return (ts_us // size) * size


def window_sums(limb_sums: list[np.ndarray], layout: LimbLayout, n: int, term: SumTerm = _PLAIN) -> list[int]:
    """Per-row exact sums in the term's units (0 for an empty window) from per-row
    limb sums."""
    if not layout.count:
        return [0] * n
    cols = [s.tolist() for s in limb_sums]
    return [units_from_limb_sums([col[row] for col in cols], layout, term) for row in range(n)]


def finalize_rows(function: AggFunction, rows: list[WindowParts], what: str) -> list[Any]:
    """`function`'s value of each row's parts; a sum beyond float64 is a clear error."""
    try:
        return [function.finalize(row) for row in rows]
    except OverflowError:
        raise BadInputError(
            f"{what}: a windowed {function.name} overflows float64 (values near 1.8e308); "
            "it has no float value"
        ) from None
