"""Raw engine columns -> the output table: the entity frame as given, then one column per
requested feature, typed as the view declares it.

Both engines hand over the same raw columns (names from `batch.historical.plan`), in
row order; everything from here on is shared, so the engines cannot disagree on
types, empty-window values or sum rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.aggregations import COUNT, DISTINCT, MAX, MIN, AggFunction, WindowParts, get, output_dtype
from featureline.batch.historical.aggregations import LimbLayout, finalize_rows, window_sums
from featureline.batch.historical.plan import (
    RetrievalPlan,
    ViewRequest,
    WindowGroup,
    agg_column,
    plain_column,
)
from featureline.errors import BadInputError
from featureline.offline import ARROW_TYPES

LayoutKey = tuple[int, str, str]  # (view index, input column, sum part)


@dataclass(frozen=True)
class RawResult:
    """What an engine returns: raw columns in entity row order, and the limb layout of
    every exact sum of a column (featureline.aggregations.SumTerm)."""

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
        dtype = output_dtype(agg.function, input_types.get(agg.column, ""))
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
    """One feature's values: its function's finalize (featureline.aggregations) over
    each row's parts."""
    table = raw.table

    def name(kind: str) -> str:
        return agg_column(view.index, group.index, col, kind)

    fn = get(function)
    if fn.direct:  # the engine's column as it is: no Python loop per row
        return _raw(table, name(fn.direct), n, fn.finalize(WindowParts(0)))
    counts = _raw(table, name(COUNT), n, 0)
    column = next(c for c in group.columns if c.index == col)
    rows = [WindowParts(count) for count in counts.to_pylist()]
    for term in column.sum_terms:
        layout = raw.layouts.get((view.index, column.column, term.part), LimbLayout.empty())
        limb_sums = [
            _raw(table, name(f"{term.tag}{i}"), n, 0).to_numpy().astype(np.int64) for i in range(layout.count)
        ]
        for row, units in zip(rows, window_sums(limb_sums, layout, n, term), strict=True):
            row.sums[term.part] = units
    _fill(rows, fn, table, name, n)
    values = finalize_rows(fn, rows, f"feature view {view.view.name!r}")
    return pa.array(values, type=_value_type(fn, table, name))


def _value_type(fn: AggFunction, table: pa.Table, name: Callable[[str], str]) -> pa.DataType | None:
    """The function's output type; for one of the column's own type (min, max), the
    engine's column type, so that values keep it exactly."""
    if fn.output:
        return ARROW_TYPES.get(fn.output)
    for part in (MIN, MAX):
        if part in fn.parts and name(part) in table.column_names:
            return table.column(name(part)).type
    return None


def _fill(
    rows: list[WindowParts], fn: AggFunction, table: pa.Table, name: Callable[[str], str], n: int
) -> None:
    """min, max and distinct counts of each row, for the functions that read them."""
    if MIN in fn.parts:
        for row, v in zip(rows, _raw(table, name(MIN), n).to_pylist(), strict=True):
            row.min = v
    if MAX in fn.parts:
        for row, v in zip(rows, _raw(table, name(MAX), n).to_pylist(), strict=True):
            row.max = v
    if DISTINCT in fn.parts:
        for row, d in zip(rows, _raw(table, name(DISTINCT), n, 0).to_pylist(), strict=True):
            row.n_distinct = d
