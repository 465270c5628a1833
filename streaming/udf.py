"""StreamFeatureView udfs in the stream job: compiled once per view, run per batch, and
a failure confined to the events that cause it.

A view's udf is a pandas function, DataFrame -> DataFrame, over the batch's valid
events (every raw column, plus `created`, `kafka_partition`, `kafka_offset`). Its
output must hold the view's join keys, its timestamp field and its features (or, for
an aggregating view, the aggregated input columns); the Kafka identity columns it
drops are taken back from the input when it kept the rows one for one.

A udf is the repo's own code, so it can raise anything, or return the wrong thing
(a missing column, a value that does not fit the declared type). Neither may stop the
job: the batch is bisected until the rows that fail are single events. Those are
dead-lettered (`<topic>.dlq`, error naming the view and the exception) and left out
of that view only: they are valid events, so the other views and the raw offline
store still have them. A udf that fails on k events of n costs about 2 k log2(n)
extra calls; one that fails on every event, 2 n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from featureline.offline import ARROW_TYPES, CREATED, KAFKA_OFFSET, KAFKA_PARTITION
from featureline.specs import ViewSpec
from featureline.streaming.batches import DeadLetter, ParsedBatch

_IDENTITY = (CREATED, KAFKA_PARTITION, KAFKA_OFFSET)


class UdfError(Exception):
    """A view's udf failed on a table of events (message: the view, then why)."""


def view_columns(view: ViewSpec) -> tuple[str, ...]:
    """What the rest of the job reads from a view's events."""
    values = view.input_fields if view.is_aggregating else view.features
    names = [*view.join_key_names, view.timestamp_field, *(f.name for f in values)]
    return tuple(dict.fromkeys(names))


class ViewUdf:
    """One view's udf, compiled once (at the job's start: a udf that cannot compile
    is a definition error, reported before any event is read)."""

    def __init__(self, view: ViewSpec, input_schema: pa.Schema) -> None:
        from featureline.odfv import compile_source

        self.view = view
        self.where = f"stream feature view {view.name!r}"
        self.func: Callable[..., Any] = compile_source(self.where, view.udf_source, "", "pandas")[0]
        self.schema = _output_schema(view, input_schema)

    def __call__(self, table: pa.Table) -> pa.Table:
        """The udf over `table`, as a table of `self.schema`; UdfError when it fails."""
        import pandas as pd

        try:
            out = self.func(table.to_pandas())
        except Exception as exc:  # the repo's code: anything can come out of it
            raise UdfError(f"udf of {self.where} raised {type(exc).__name__}: {exc}") from None
        if not isinstance(out, pd.DataFrame):
            raise UdfError(f"udf of {self.where} returned {type(out).__name__}, not a DataFrame")
        missing = [c for c in view_columns(self.view) if c not in out.columns]
        if missing:
            raise UdfError(f"udf of {self.where} returned no column(s) {', '.join(missing)}")
        try:
            result = pa.Table.from_pandas(out, preserve_index=False)
            return self._conform(result, table)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise UdfError(f"udf of {self.where} returned values that do not fit: {exc}") from None

    def _conform(self, result: pa.Table, table: pa.Table) -> pa.Table:
        for name in _IDENTITY:
            if name in result.column_names:
                continue
            if result.num_rows != table.num_rows:
                raise UdfError(f"udf of {self.where} changed the number of rows and dropped column {name!r}")
            result = result.append_column(name, table[name])
        return result.select(self.schema.names).cast(self.schema)


def _output_schema(view: ViewSpec, input_schema: pa.Schema) -> pa.Schema:
    """Input columns keep their type (the pandas round trip turns microsecond
    timestamps into nanoseconds); new features get their declared type."""
    declared = {f.name: ARROW_TYPES.get(f.dtype) for f in (*view.features, *view.input_fields)}
    fields = []
    for name in (*view_columns(view), *_IDENTITY):
        if name in input_schema.names:
            fields.append(input_schema.field(name))
        elif declared.get(name) is not None:
            fields.append(pa.field(name, declared[name]))
        else:
            fields.append(pa.field(name, pa.null()))
    return pa.schema(fields)


def run_isolating(
    udf: Callable[[pa.Table], pa.Table], table: pa.Table
) -> tuple[list[pa.Table], dict[int, str]]:
    """The udf over `table`, bisected on failure: the outputs of the parts that
    succeeded, and row index -> error for the single rows that fail."""
    try:
        return [udf(table)], {}
    except UdfError as exc:
        if table.num_rows <= 1:
            return [], {0: str(exc)}
    mid = table.num_rows // 2
    left, left_bad = run_isolating(udf, table.slice(0, mid))
    right, right_bad = run_isolating(udf, table.slice(mid))
    return [*left, *right], {**left_bad, **{mid + i: e for i, e in right_bad.items()}}


@dataclass
class ViewTables:
    """A batch's events as each view sees them, and the events a udf refused."""

    tables: dict[str, pa.Table] = field(default_factory=dict)
    dead: list[DeadLetter] = field(default_factory=list)

    @property
    def dead_offsets(self) -> set[int]:
        return {d.offset for d in self.dead}


class ViewInputs:
    """Per topic: each view's table of a ParsedBatch (the batch's own table for a
    view without udf, no copy)."""

    def __init__(self, views: list[ViewSpec], input_schema: pa.Schema) -> None:
        self.views = views
        self._udfs = {v.name: ViewUdf(v, input_schema) for v in views if v.udf_source}

    def prepare(self, batch: ParsedBatch) -> ViewTables:
        out = ViewTables()
        errors: dict[int, list[str]] = {}
        for view in self.views:
            udf = self._udfs.get(view.name)
            if udf is None or batch.table.num_rows == 0:
                out.tables[view.name] = batch.table
                continue
            parts, bad = run_isolating(udf, batch.table)
            out.tables[view.name] = pa.concat_tables(parts) if parts else udf.schema.empty_table()
            offsets = batch.table[KAFKA_OFFSET]
            for row, error in bad.items():
                errors.setdefault(offsets[row].as_py(), []).append(error)
        out.dead = [
            DeadLetter(batch.topic, batch.partition, off, batch.raw_value(off), "; ".join(errs))
            for off, errs in sorted(errors.items())
        ]
        return out
