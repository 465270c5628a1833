"""The aggregation registry (featureline.aggregations): one definition per function,
checked against the naive oracle (tests/oracle/naive.py), which imports none of it."""

from __future__ import annotations

import math

import pytest
from hypothesis import strategies as st
from oracle import naive

from featureline import aggregations as agg

_values = st.one_of(
    st.none(),
    st.just(math.nan),
    st.floats(allow_infinity=False, min_value=-1e150, max_value=1e150),
    st.integers(min_value=-(2**40), max_value=2**40),
)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a.hex() == b.hex()
    return a == b


def test_every_function_is_the_oracles_and_nothing_else() -> None:
    assert set(agg.FUNCTIONS) == set(naive.FUNCTIONS) & set(agg.FUNCTIONS)
    with pytest.raises(ValueError, match="unknown aggregation function 'median'"):
        agg.get("median")


@pytest.mark.parametrize("function", list(agg.FUNCTIONS))
def test_empty_window_values_are_semantics_table(function: str) -> None:
    assert _same(agg.empty_value(function), naive.empty_value(function))


def test_parts_and_output_types() -> None:
    assert agg.parts_of(["count"]) == {"count"}
    assert agg.parts_of(["mean", "max"]) == {"count", "sum", "max"}
    assert agg.parts_of(["count_distinct"]) == {"count", "distinct"}
    assert agg.output_dtype("count", "string") == "int64"
    assert agg.output_dtype("mean", "int32") == "float64"
    assert agg.output_dtype("max", "int32") == "int32"
    for name in ("var", "variance", "std", "stddev"):
        assert agg.parts_of([name]) == {"count", "sum", "sumsq"}
        assert agg.output_dtype(name, "int64") == "float64"


@pytest.mark.parametrize(
    ("values", "var"),
    [
        ([], None),
        ([None, 3.0, math.nan], None),  # n = 1
        ([1e9 + 1, 1e9 + 2, 1e9 + 3], 1.0),  # float squares would give ~100 off
        ([1.0, 2.0, 4.0, 8.5], 33.1875 / 3),
        ([5e-324, 5e-324, 1e-323], 0.0),  # exactly 2**-2148 / 3: rounds to 0.0
        ([2, 4, 4, 4, 5, 5, 7, 9], 32 / 7),  # ints read as float64
    ],
)
def test_variance_and_std(values: list[object], var: float | None) -> None:
    want_var = naive.aggregate(values, "var")
    if var is not None:
        assert want_var == var
    for name in ("var", "variance"):
        assert _same(agg.aggregate(values, name), want_var)
    for name in ("std", "stddev"):
        assert _same(agg.aggregate(values, name), naive.aggregate(values, "std"))


def test_variance_where_plain_floats_cancel() -> None:
    """The same formula in float64 (rounded squares and sums) gives 0.0 here."""
    xs = [1e9 + 1, 1e9 + 2, 1e9 + 3]
    assert (sum(x * x for x in xs) - sum(xs) ** 2 / 3) / 2 != 1.0
    assert agg.aggregate(xs, "var") == naive.aggregate(xs, "var") == 1.0


def test_variance_of_a_state_without_squares_is_null_not_an_error() -> None:
    """A tile written before a var aggregation existed holds no sum of squares."""
    state = agg.AggState()
    for v in (1.0, 2.0, 4.0):
        state.add(v, parts={"count", "sum"})
    assert state.result("var") is None and state.result("std") is None
    state.add(8.0, parts={"count", "sum", "sumsq"})
    assert state.more["sumsq"] == agg.exact_units(8.0) ** 2  # (a 2**-1074)**2 = a**2 2**-2148
