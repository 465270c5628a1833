"""Tiles as the naive oracle sees them: for each (key, tile size, tile start), the exact
figures each aggregation needs (count, exact sum, exact sum of exact squares, min, max,
distinct set), from a list of events, and the same figures read from stored tile rows
(streamed or backfilled) or tile states."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction
from typing import Any

import pyarrow as pa
from oracle.naive import US, aggregate, is_null, tile_size_s, tile_start_us

from featureline.aggregations import AggState
from featureline.offline_layout import STATE, TILE_SIZE_S, TILE_START_S
from featureline.online.tiles import decode_tile, merge_tile_states
from featureline.specs import ViewSpec

_VAR = ("var", "variance", "std", "stddev")


def _figure(function: str, count: int, sums: tuple[Fraction, Fraction], vmin: Any, vmax: Any,
            distinct: set[Any]) -> Any:  # fmt: skip
    """What a tile must hold for one aggregation function: exact figures, so that a tile
    right by its count but wrong in its sum (or type) is seen. `sums`: the exact sum of
    the values and of their exact squares."""
    if function in _VAR:
        return (count, *sums)
    return {"count": count, "sum": (count, sums[0]), "mean": (count, sums[0]), "min": vmin,
            "max": vmax, "count_distinct": distinct}[function]  # fmt: skip


def oracle_tiles(view: ViewSpec, events: list[dict[str, Any]]) -> dict[tuple[Any, ...], dict[str, Any]]:
    """(key, tile size, tile start) -> each aggregation's figures over the tile's events
    (dicts with the view's key and columns and `_ts_us`), by the naive oracle."""
    key_name = view.join_key_names[0]
    sizes = {tile_size_s(a.window_s, a.slide_s) for a in view.aggregations}
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for e in events:
        for size in sizes:
            groups[(e[key_name], size, tile_start_us(e["_ts_us"], size) // US)].append(e)
    out = {}
    for ident, mine in groups.items():
        figures = {}
        for agg in view.aggregations:
            if tile_size_s(agg.window_s, agg.slide_s) != ident[1]:
                continue
            values = [e[agg.column] for e in mine]
            present = [v for v in values if not is_null(v)]
            numeric = agg.function in ("sum", "mean", *_VAR)  # a string column has no sum
            exact = sum((Fraction(v) for v in present), Fraction(0)) if numeric else Fraction(0)
            squares = sum((Fraction(v) ** 2 for v in present), Fraction(0)) if numeric else Fraction(0)
            figures[agg.name] = _figure(
                agg.function, aggregate(values, "count"), (exact, squares),
                aggregate(values, "min"), aggregate(values, "max"), set(present),
            )  # fmt: skip
        out[ident] = figures
    return out


def stored_tiles(view: ViewSpec, table: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The streamed tile rows merged over partitions, dates and flushes, as the same
    figures (the stored exact sum read as a Fraction of 2**-1074 units)."""
    merged: dict[tuple[Any, ...], Any] = defaultdict(dict)
    for row in table.to_pylist():
        ident = (row[view.join_key_names[0]], row[TILE_SIZE_S], row[TILE_START_S])
        merge_tile_states(merged[ident], decode_tile(row[STATE]))
    return {ident: state_figures(view, ident[1], states) for ident, states in merged.items()}


def state_figures(view: ViewSpec, tile_s: int, states: dict[str, AggState]) -> dict[str, Any]:
    """The figures of one tile's states (exact sums read as Fractions of their units:
    2**-1074 for values, 2**-2148 for squares)."""
    figures = {}
    for agg in view.aggregations:
        st = states.get(agg.column)
        if st is None or tile_size_s(agg.window_s, agg.slide_s) != tile_s:
            continue
        sums = (Fraction(st.sum_units, 2**1074), Fraction(st.units("sumsq"), 2**2148))
        figures[agg.name] = _figure(agg.function, st.count, sums, st.min, st.max, st.distinct)
    return figures


def same_figures(stored: dict[str, Any], want: dict[str, Any]) -> bool:
    """Equal figures, and count, min and max of the same type (3 is not 3.0)."""
    if stored.keys() != want.keys():
        return False
    for name, w in want.items():
        g = stored[name]
        if g != w or type(g) is not type(w):
            return False
        if not isinstance(w, set | tuple) and repr(g) != repr(w):
            return False
    return True
