"""The aggregation functions of semantics.md 2, each defined once.

Every path (stream tiles, backfill tiles and feature rows, historical retrieval in
DuckDB and Spark, serving's tile merge) computes the same mergeable *parts* of the
events of a window, and reads feature values from them only through this module:

    count     number of non-null values
    sum       exact sum of the values                  (`SumTerm`, units 2**-1074)
    sumsq     exact sum of the values' exact squares   (`SumTerm`, units 2**-2148)
    min, max  of the non-null values
    distinct  the distinct non-null values (their number, offline)

A function (`AggFunction`) names the parts it reads, its output type, and how its
value is finalized from them, with semantics.md's empty-window value. Engines ask
`parts_of(functions)` what to compute and `get(function).finalize` for values; no
engine tests a function's name. A new function that reads existing parts is one
entry in `FUNCTIONS`; a new exact sum is one `SumTerm` (its scalar units for the
stream / backfill / serving paths, and its vectorized float pieces that
batch.historical.aggregations splits into integer limbs for SQL engines).

Sums are exact: each float64 value is an integer multiple of 2**-1074, so a sum is a
Python int in those units (`exact_units`) and is rounded once, correctly, when read.
Merging tiles in any order, or summing events in any order, gives bit-identical
results on every path, so online and offline agree to the last digit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

COUNT, SUM, SUMSQ, MIN, MAX, DISTINCT = "count", "sum", "sumsq", "min", "max", "distinct"

# 2**-1074 is the smallest positive float64 (subnormal), so every finite float64 is
# an integer number of these units.
UNIT_EXP = 1074
_UNIT_DENOMINATOR = 1 << UNIT_EXP


# --- exact sums ------------------------------------------------------------------------


def exact_units(value: float) -> int:
    """A finite float64 as an exact integer count of 2**-1074."""
    num, den = float(value).as_integer_ratio()
    # den is a power of two <= 2**1074 for every finite float64.
    return num << (UNIT_EXP - (den.bit_length() - 1))


def units_to_float(units: int) -> float:
    """Round an exact sum to the nearest float64 (ties to even), once.

    CPython's int / int is correctly rounded (ties to even, subnormals included), so it
    equals float(Fraction(units, 2**1074)) at ~0.3 us instead of ~6 us (the serving
    path rounds one sum per aggregation per entity: 13,000 for a batch of 1,000)."""
    return units / _UNIT_DENOMINATOR


def units_mean(units: int, count: int) -> float | None:
    return None if count == 0 else units / (count << UNIT_EXP)


# (negative, mantissa as uint64, exponent as int64): the value is +-mantissa * 2**exponent.
Piece = tuple[np.ndarray, np.ndarray, np.ndarray]
_FRAC_MASK = np.uint64((1 << 52) - 1)
_IMPLICIT_BIT = np.uint64(1 << 52)
_EXP_ALL_ONES = 0x7FF  # inf / nan


def float_parts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(negative, mantissa uint64, exponent int64, finite) of float64 values."""
    bits = np.ascontiguousarray(values, dtype=np.float64).view(np.uint64)
    negative = (bits >> np.uint64(63)).astype(bool)
    exp_field = ((bits >> np.uint64(52)) & np.uint64(0x7FF)).astype(np.int64)
    frac = bits & _FRAC_MASK
    normal = exp_field != 0
    mant = np.where(normal, frac | _IMPLICIT_BIT, frac)
    exp = np.where(normal, exp_field - 1075, -UNIT_EXP)
    return negative, mant, exp, exp_field != _EXP_ALL_ONES


def _value_pieces(values: np.ndarray) -> list[Piece]:
    """The values themselves: one piece each (mantissa < 2**53); NaN is zero."""
    negative, mant, exp, finite = float_parts(values)
    return [(negative, np.where(finite, mant, np.uint64(0)), exp)]


@dataclass(frozen=True)
class SumTerm:
    """An exact sum, over the non-null values, of one term of each value.

    `units` is the term of one value as an integer count of 2**-unit_exp (stream,
    backfill and serving paths sum these). `pieces` is the same term, vectorized, as
    signed pieces mantissa * 2**exponent with mantissas below 2**mant_bits, which SQL
    engines split into integer limbs and sum (batch.historical.aggregations)."""

    part: str
    tag: str  # the letter of its limb columns in SQL engines
    unit_exp: int
    mant_bits: int
    units: Callable[[Any], int]
    pieces: Callable[[np.ndarray], list[Piece]]


def _square_units(value: Any) -> int:
    """The exact square of a float64 (not the rounded float product) in 2**-2148 units,
    the square of the sum's unit: the integer square of its exact_units."""
    num, den = float(value).as_integer_ratio()
    return (num * num) << (2 * (UNIT_EXP - (den.bit_length() - 1)))


_HALF_BITS = 27
_HALF_MASK = np.uint64((1 << _HALF_BITS) - 1)


def _square_pieces(values: np.ndarray) -> list[Piece]:
    """Exact squares as three pieces: a mantissa m = hi * 2**27 + lo (hi < 2**26,
    lo < 2**27) squares to hi*hi * 2**54 + 2*hi*lo * 2**27 + lo*lo, each below 2**54,
    so uint64 products hold them exactly (m*m itself needs 106 bits)."""
    _, mant, exp, finite = float_parts(values)
    mant = np.where(finite, mant, np.uint64(0))
    hi, lo = mant >> np.uint64(_HALF_BITS), mant & _HALF_MASK
    twice = 2 * exp
    positive = np.zeros(len(mant), dtype=bool)
    return [
        (positive, hi * hi, twice + 2 * _HALF_BITS),
        (positive, np.uint64(2) * hi * lo, twice + _HALF_BITS),
        (positive, lo * lo, twice),
    ]


# Squares are exact on every path (not the IEEE-rounded x*x): with rounded squares,
# 1e9+1, 1e9+2, 1e9+3 (squares ~1e18, where float64 values are 128 apart) would give a
# variance off by up to ~100 instead of 1.0. Their SQL limbs add three pieces per value
# (< 3 * 2**32 a limb), so int64 limb sums stay exact below ~7e8 events a window.
SUM_TERMS: tuple[SumTerm, ...] = (
    SumTerm(SUM, "l", UNIT_EXP, 53, exact_units, _value_pieces),
    SumTerm(SUMSQ, "q", 2 * UNIT_EXP, 54, _square_units, _square_pieces),
)
SUM_PARTS: dict[str, SumTerm] = {t.part: t for t in SUM_TERMS}


def sum_terms(parts: Collection[str]) -> tuple[SumTerm, ...]:
    """The exact sums among `parts`, in SUM_TERMS order."""
    return tuple(t for t in SUM_TERMS if t.part in parts)


# --- state ------------------------------------------------------------------------------


class Parts(Protocol):
    """What a function's finalize reads: a window's parts (an AggState, or one row of
    an SQL engine's aggregates)."""

    @property
    def count(self) -> int: ...
    @property
    def min(self) -> Any: ...
    @property
    def max(self) -> Any: ...
    def units(self, part: str) -> int: ...
    def distinct_count(self) -> int: ...


@dataclass
class AggState:
    """Mergeable partial aggregate of one column over a set of events (one tile, or a
    window). Nulls are skipped: `count` counts non-null values. `sum_units` is the
    `sum` term; `more` holds the other exact sums (SUM_TERMS[1:]) by part."""

    count: int = 0
    sum_units: int = 0
    min: Any = None
    max: Any = None
    distinct: set[Any] = field(default_factory=set)
    more: dict[str, int] = field(default_factory=dict)

    def units(self, part: str) -> int:
        return self.sum_units if part == SUM else self.more.get(part, 0)

    def add_units(self, part: str, units: int) -> None:
        if part == SUM:
            self.sum_units += units
        elif units:
            self.more[part] = self.more.get(part, 0) + units

    def distinct_count(self) -> int:
        return len(self.distinct)

    def add(self, value: Any, *, parts: Collection[str] = (SUM, DISTINCT)) -> None:
        """Count one value. `parts` (from `parts_of`) says which sums and sets to keep;
        the default keeps the plain sum and the distinct set (count..count_distinct)."""
        if value is None or (isinstance(value, float) and value != value):
            return
        self.count += 1
        for term in sum_terms(parts):
            self.add_units(term.part, term.units(value))
        if self.min is None or value < self.min:
            self.min = value
        if self.max is None or value > self.max:
            self.max = value
        if DISTINCT in parts:
            self.distinct.add(value)

    def merge(self, other: AggState) -> None:
        self.count += other.count
        self.sum_units += other.sum_units
        for part, units in other.more.items():
            self.add_units(part, units)
        if other.min is not None and (self.min is None or other.min < self.min):
            self.min = other.min
        if other.max is not None and (self.max is None or other.max > self.max):
            self.max = other.max
        self.distinct |= other.distinct

    def result(self, function: str) -> Any:
        """The feature value for `function`, with semantics.md's empty-window values."""
        return get(function).finalize(self)


@dataclass
class WindowParts:
    """A window's parts as plain values (one row of a batch engine's aggregates, where
    distinct values arrive as their number): featureline.aggregations.Parts."""

    count: int
    sums: dict[str, int] = field(default_factory=dict)
    min: Any = None
    max: Any = None
    n_distinct: int = 0

    def units(self, part: str) -> int:
        return self.sums.get(part, 0)

    def distinct_count(self) -> int:
        return self.n_distinct


# --- functions ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AggFunction:
    """One aggregation function: the parts it reads, its output type ("int64",
    "float64", or "" for the aggregated column's own type) and its finalize.

    `direct`: a part whose per-window aggregate in an SQL engine (count, min, max, the
    number of distinct values) is the value itself, nulls read as the empty-window
    value; engines may pass that column through instead of finalizing row by row."""

    name: str
    parts: frozenset[str]
    output: str
    finalize: Callable[[Parts], Any]
    direct: str | None = None

    @property
    def numeric(self) -> bool:
        """Reads exact sums: the column must be numeric (ints read as float64)."""
        return any(p in SUM_PARTS for p in self.parts)


def _fn(
    name: str, parts: Iterable[str], output: str, finalize: Callable[[Parts], Any], direct: str | None = None
) -> AggFunction:
    return AggFunction(name, frozenset((COUNT, *parts)), output, finalize, direct)


def _variance(s: Parts) -> float | None:
    """Sample variance (semantics.md 2), null when n < 2. With S = sum * 2**-1074 and
    Q = sumsq * 2**-2148, (Q - S**2/n) / (n - 1) = (n*sumsq - sum**2) / (n(n-1) 2**2148):
    integers, divided once with CPython's correctly rounded int / int."""
    n = s.count
    if n < 2:
        return None
    total = s.units(SUM)
    numerator = n * s.units(SUMSQ) - total * total
    # >= 0 for any values (Cauchy-Schwarz); < 0 only when the squares are missing (tiles
    # written before a var/std aggregation was added): no value rather than a wrong one.
    return None if numerator < 0 else numerator / ((n * (n - 1)) << (2 * UNIT_EXP))


def _std(s: Parts) -> float | None:
    """The square root of the correctly rounded variance (semantics.md 2)."""
    variance = _variance(s)
    return None if variance is None else math.sqrt(variance)


_DEFINED = (
    _fn("count", (), "int64", lambda s: s.count, direct=COUNT),
    _fn("sum", (SUM,), "float64", lambda s: units_to_float(s.units(SUM))),
    _fn("mean", (SUM,), "float64", lambda s: units_mean(s.units(SUM), s.count)),
    _fn("min", (MIN,), "", lambda s: s.min, direct=MIN),
    _fn("max", (MAX,), "", lambda s: s.max, direct=MAX),
    _fn("count_distinct", (DISTINCT,), "int64", lambda s: s.distinct_count(), direct=DISTINCT),
    # Feast's Aggregation accepts both spellings of each (feast.aggregation.tiling).
    _fn("var", (SUM, SUMSQ), "float64", _variance),
    _fn("variance", (SUM, SUMSQ), "float64", _variance),
    _fn("std", (SUM, SUMSQ), "float64", _std),
    _fn("stddev", (SUM, SUMSQ), "float64", _std),
)
FUNCTIONS: dict[str, AggFunction] = {f.name: f for f in _DEFINED}
AGG_FUNCTIONS = tuple(FUNCTIONS)


def get(function: str) -> AggFunction:
    try:
        return FUNCTIONS[function]
    except KeyError:
        raise ValueError(
            f"unknown aggregation function {function!r}; known: {', '.join(FUNCTIONS)}"
        ) from None


def parts_of(functions: Iterable[str]) -> frozenset[str]:
    """The parts a set of functions over one column and window read together."""
    out: frozenset[str] = frozenset((COUNT,))
    for function in functions:
        out |= get(function).parts
    return out


def output_dtype(function: str, input_dtype: str) -> str:
    """The feature's dtype: the function's own, else the aggregated column's."""
    return get(function).output or input_dtype


def empty_value(function: str) -> Any:
    return get(function).finalize(AggState())


def aggregate(values: Iterable[Any], function: str) -> Any:
    """The reference aggregate of plain values (what a naive oracle computes)."""
    state = AggState()
    parts = get(function).parts
    for v in values:
        state.add(v, parts=parts)
    return state.result(function)
