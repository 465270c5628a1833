"""The aggregation registry (featureline.aggregations): one definition per function,
checked against the naive oracle (tests/oracle/naive.py), which imports none of it."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import naive

from featureline import aggregations as agg
from featureline.batch.historical.aggregations import limb_layout, limbs, units_from_limb_sums

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


@settings(max_examples=300, deadline=None)
@given(st.lists(_values, max_size=12), st.sampled_from(list(agg.FUNCTIONS)))
def test_functions_equal_the_oracle(values: list[object], function: str) -> None:
    numeric = [v for v in values if v is None or isinstance(v, float | int)]
    assert _same(agg.aggregate(numeric, function), naive.aggregate(numeric, function))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_values, max_size=6), min_size=1, max_size=5), st.sampled_from(list(agg.FUNCTIONS)))
def test_merged_states_equal_one_state(tiles: list[list[object]], function: str) -> None:
    """Tiles merged in any order give the state of all their values at once."""
    parts = agg.get(function).parts
    states = []
    for values in tiles:
        state = agg.AggState()
        for v in values:
            state.add(v, parts=parts)
        states.append(state)
    whole = agg.AggState()
    for v in (v for values in tiles for v in values):
        whole.add(v, parts=parts)
    random.Random(len(tiles)).shuffle(states)
    merged = agg.AggState()
    for state in states:
        merged.merge(state)
    assert _same(merged.result(function), whole.result(function))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(allow_infinity=False, min_value=-1e150, max_value=1e150), max_size=10))
def test_sum_terms_limbs_equal_their_units(values: list[float]) -> None:
    """SQL engines' limb sums of every SumTerm equal the stream path's exact units."""
    array = np.array(values, dtype=np.float64)
    for term in agg.SUM_TERMS:
        layout = limb_layout(array, term)
        sums = [int(limb.sum()) for limb in limbs(array, layout, term)]
        want = sum(term.units(v) for v in values if not math.isnan(v))
        assert units_from_limb_sums(sums, layout, term) == want
