"""Raw engine columns -> the output table: the entity frame as given, then one column per
requested feature, typed as the view declares it.

Both engines hand over the same raw columns (names from `batch.historical.plan`), in
row order; everything from here on is shared, so the engines cannot disagree on
types, empty-window values or sum rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.batch.historical.aggregations import LimbLayout, mean_values, sum_values
from featureline.batch.historical.plan import (
    RetrievalPlan,
    ViewRequest,
    WindowGroup,
    agg_column,
    plain_column,
)
from featureline.errors import BadInputError
from featureline.offline import ARROW_TYPES
from featureline.semantics import empty_value

LayoutKey = tuple[int, str]  # (view index, input column)


@dataclass(frozen=True)
class RawResult:
    """What an engine returns: raw columns in entity row order, and the limb layout of
    every summed column."""

    table: pa.Table
    layouts: dict[LayoutKey, LimbLayout]


def finish(plan: RetrievalPlan, raw: RawResult) -> pa.Table:
    n = plan.entities.num_rows
    if raw.table.num_rows != n:
        raise RuntimeError(f"engine returned {raw.table.num_rows} rows for {n} entity rows")
    out = plan.entities.table
    for view in plan.views:
        columns = _plain(view, raw.table, n) if not view.groups else _aggregated(view, raw, n)
        for (_, name), column in zip(view.outputs, columns, strict=True):
            out = out.append_column(name, column)
    return out


def _cast(values: pa.Array | pa.ChunkedArray, dtype: str, what: str) -> pa.ChunkedArray:
    target = ARROW_TYPES.get(dtype)
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if target is None or values.type == target:
        return values
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise BadInputError(f"{what}: source values of type {values.type} are not {dtype}: {exc}") from exc


def _plain(view: ViewRequest, raw: pa.Table, n: int) -> list[pa.ChunkedArray]:
    features = view.features
    result = []
    for feature, _ in view.outputs:
        spec = view.view.feature(feature)
        name = plain_column(view.index, features.index(feature))
        what = f"feature {view.view.name}:{feature}"
        if name in raw.column_names:
            result.append(_cast(raw.column(name), spec.dtype, what))
        else:  # the source has no files yet: no row matches
            result.append(_cast(pa.nulls(n), spec.dtype, what))
    return result


def _aggregated(view: ViewRequest, raw: RawResult, n: int) -> list[pa.ChunkedArray]:
    input_types = {f.name: f.dtype for f in view.view.input_fields}
    result = []
    for feature, _ in view.outputs:
        agg = view.aggregation(feature)
        group = next(g for g in view.groups if (g.window_s, g.tile_s) == (agg.window_s, agg.tile_s))
        col = next(c for c in group.columns if c.column == agg.column)
        dtype = (
            "int64"
            if agg.function in ("count", "count_distinct")
            else ("float64" if agg.function in ("sum", "mean") else input_types.get(agg.column, ""))
        )
        values = _agg_values(view, group, col.index, agg.function, raw, n)
        result.append(_cast(values, dtype, f"feature {view.view.name}:{feature}"))
    return result


def _raw(raw: pa.Table, name: str, n: int, fill: object = None) -> pa.ChunkedArray:
    if name not in raw.column_names:
        return (
            pa.chunked_array([pa.nulls(n)])
            if fill is None
            else pa.chunked_array([pa.array(np.full(n, fill))])
        )
    column = raw.column(name)
    return column if fill is None else pc.fill_null(column, fill)


def _agg_values(
    view: ViewRequest, group: WindowGroup, col: int, function: str, raw: RawResult, n: int
) -> pa.ChunkedArray | pa.Array:
    table = raw.table

    def name(kind: str) -> str:
        return agg_column(view.index, group.index, col, kind)

    if function == "count":
        return _raw(table, name("count"), n, 0)
    if function == "count_distinct":
        return _raw(table, name("distinct"), n, 0)
    if function in ("min", "max"):
        return _raw(table, name(function), n)
    if function not in ("sum", "mean"):
        raise BadInputError(f"feature view {view.view.name!r}: unknown aggregation {function!r}")
    column = next(c.column for c in group.columns if c.index == col)
    layout = raw.layouts.get((view.index, column), LimbLayout.empty())
    sums = [_raw(table, name(f"l{i}"), n, 0).to_numpy().astype(np.int64) for i in range(layout.count)]
    if function == "sum":
        if layout.count == 0:
            return pa.array(np.full(n, empty_value("sum"), dtype=np.float64))
        return sum_values(sums, layout, n)
    counts = _raw(table, name("count"), n, 0).to_numpy()
    return mean_values(sums, counts, layout)
