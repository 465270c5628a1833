"""The entity frame: the request rows of a historical retrieval, loaded and checked.

Accepted as a pyarrow Table, a pandas DataFrame or a .parquet / .csv file. The frame is
kept as given (every input column comes back unchanged); what the engines read is a
narrow copy: row number, the row's instant in UTC microseconds, and the join keys cast
to the views' key types. Naive timestamps are UTC (and come back UTC-aware, as in
Feast); zoned ones are compared as instants (semantics.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.dtypes import arrow_type
from featureline.errors import BadInputError

DEFAULT_TIMESTAMP_COLUMN = "event_timestamp"
ROW_ID = "__fl_row"
ROW_TS = "__fl_ts"

# Join key columns as the engines compare them (Arrow forms from featureline.dtypes):
# int32 keys widened to int64, so a frame's int32 or int64 column joins either.
_KEY_TYPES: dict[str, pa.DataType] = {
    dtype: arrow_type("int64" if dtype == "int32" else dtype)
    for dtype in ("int32", "int64", "string", "bytes", "bool")
}


@dataclass(frozen=True)
class EntityFrame:
    """The request rows as given, and the row instants (UTC microseconds, no nulls)."""

    table: pa.Table
    timestamp_column: str
    ts_us: np.ndarray

    @property
    def num_rows(self) -> int:
        return self.table.num_rows


def load_entity_df(
    source: Any,
    timestamp_column: str | None = None,
    key_types: dict[str, str] | None = None,
) -> EntityFrame:
    """Load and check an entity frame. `key_types` (join key -> spec dtype) lets a CSV's
    key columns be read with their views' types instead of guessed ones."""
    table = _as_table(source, key_types or {})
    if table.num_rows == 0:
        raise BadInputError("the entity frame is empty: it has no rows")
    ts_name = _timestamp_column(table, timestamp_column)
    ts_us = _instants_us(table.column(ts_name), ts_name)
    return EntityFrame(table=_utc_aware(table, ts_name), timestamp_column=ts_name, ts_us=ts_us)


def _utc_aware(table: pa.Table, name: str) -> pa.Table:
    """A naive timestamp column is UTC: it comes back UTC-aware, as Feast returns it
    (Arrow's cast to a zone keeps the stored values, which already are UTC)."""
    kind = table.schema.field(name).type
    if not pa.types.is_timestamp(kind) or kind.tz is not None:
        return table
    index = table.schema.get_field_index(name)
    return table.set_column(index, name, table.column(name).cast(pa.timestamp(kind.unit, tz="UTC")))


def key_column(frame: EntityFrame, key: str, dtype: str, view: str) -> pa.ChunkedArray:
    """The entity frame's join key column cast to the view's key type, or a clear error."""
    if key not in frame.table.column_names:
        raise BadInputError(
            f"entity frame has no column {key!r}, the join key of feature view {view!r}; "
            f"its columns are: {', '.join(frame.table.column_names)}"
        )
    column = frame.table.column(key)
    target = _KEY_TYPES.get(dtype)
    if target is None:
        raise BadInputError(f"feature view {view!r}: join key {key!r} has unsupported type {dtype}")
    actual = column.type
    if pa.types.is_dictionary(actual):
        column, actual = pc.cast(column, actual.value_type), actual.value_type
    if pa.types.is_integer(target) and pa.types.is_floating(actual) and _integral(column):
        # pandas turns an integer column with missing values into float64 (NaN).
        return pc.cast(pc.if_else(pc.is_nan(column), None, column), target)
    if not _key_type_fits(actual, target):
        raise BadInputError(
            f"entity column {key!r} has type {actual} but feature view {view!r} joins on {key!r} as {dtype}"
        )
    return pc.cast(column, target)


def _integral(column: pa.ChunkedArray) -> bool:
    values = pc.if_else(pc.is_nan(column), None, column)
    return bool(pc.all(pc.equal(pc.floor(values), values)).as_py() is not False) and bool(
        pc.all(pc.less_equal(pc.abs(values), 2.0**53)).as_py() is not False
    )


def _key_type_fits(actual: pa.DataType, target: pa.DataType) -> bool:
    if pa.types.is_integer(target):
        return pa.types.is_integer(actual) or pa.types.is_null(actual)
    if pa.types.is_string(target):
        return pa.types.is_string(actual) or pa.types.is_large_string(actual)
    if pa.types.is_binary(target):
        return pa.types.is_binary(actual) or pa.types.is_large_binary(actual)
    return bool(actual == target)


def _as_table(source: Any, key_types: dict[str, str]) -> pa.Table:
    if isinstance(source, pa.Table):
        return source
    if isinstance(source, (str, Path)):
        return _read_file(Path(source), key_types)
    if type(source).__name__ == "DataFrame" and hasattr(source, "columns"):
        return _from_pandas(source)
    raise BadInputError(
        f"entity frame must be a pyarrow Table, a pandas DataFrame or a .parquet/.csv path, "
        f"not {type(source).__name__}"
    )


def _read_file(path: Path, key_types: dict[str, str]) -> pa.Table:
    if not path.is_file():
        raise BadInputError(f"entity frame file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        if suffix == ".csv":
            import pyarrow.csv as pcsv

            types = {k: _KEY_TYPES[t] for k, t in key_types.items() if t in _KEY_TYPES}
            return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))
    except (pa.ArrowInvalid, OSError) as exc:
        raise BadInputError(f"cannot read entity frame {str(path)!r}: {exc}") from exc
    raise BadInputError(f"entity frame {str(path)!r}: expected a .parquet or .csv file")


def _from_pandas(df: Any) -> pa.Table:
    import pandas as pd

    df = df.copy(deep=False)
    for name in df.columns:
        # Python datetimes with mixed zones (object dtype): compared as instants.
        if df[name].dtype == object and len(df) and isinstance(df[name].iloc[0], datetime):
            df[name] = pd.to_datetime(df[name], utc=True)
    try:
        return pa.Table.from_pandas(df, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise BadInputError(f"cannot convert the entity DataFrame: {exc}") from exc


def _timestamp_column(table: pa.Table, wanted: str | None) -> str:
    names = table.column_names
    if wanted is not None:
        if wanted not in names:
            raise BadInputError(
                f"entity frame has no timestamp column {wanted!r}; its columns are: {', '.join(names)}"
            )
        return wanted
    if DEFAULT_TIMESTAMP_COLUMN in names:
        return DEFAULT_TIMESTAMP_COLUMN
    # Like Feast: without `event_timestamp`, the one timestamp-typed column is the time.
    stamped = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
    if len(stamped) == 1:
        return stamped[0]
    raise BadInputError(
        f"entity frame has no timestamp column {DEFAULT_TIMESTAMP_COLUMN!r} "
        f"(name another with --timestamp-column); its columns are: {', '.join(names)}"
    )


def _instants_us(column: pa.ChunkedArray, name: str) -> np.ndarray:
    """UTC microseconds of a timestamp, date or ISO-8601 string column (floor of ns)."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        column = _parse_iso(column, name)
    elif pa.types.is_date(kind):
        column = pc.cast(pc.cast(column, pa.date32()), pa.timestamp("s"))
    elif not pa.types.is_timestamp(kind):
        raise BadInputError(f"entity timestamp column {name!r} has type {kind}, not a timestamp")
    if column.null_count:
        first = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise BadInputError(
            f"entity timestamp column {name!r} has {column.null_count} null value(s) (first at row {first})"
        )
    unit = column.type.unit
    values = np.asarray(column.cast(pa.int64()).to_numpy(), dtype=np.int64)
    # Arrow stores every timestamp as UTC since the epoch whatever its zone, and a
    # naive one as wall time, read as UTC: the raw integers are the instants.
    factor = {"s": -1_000_000, "ms": -1000, "us": 1, "ns": 1000}[unit]
    return values * -factor if factor < 0 else values // factor


def _parse_iso(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    """ISO-8601 strings; each may carry its own offset or none (then UTC)."""
    try:
        return pc.cast(column, pa.timestamp("us", tz="UTC"))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass  # mixed naive and zoned strings: parse one by one below (~1 us each)
    values: list[int | None] = []
    for i, text in enumerate(column.to_pylist()):
        if text is None:
            values.append(None)
            continue
        try:
            stamp = datetime.fromisoformat(text)
        except ValueError:
            raise BadInputError(
                f"entity timestamp column {name!r}, row {i}: {text!r} is not an ISO-8601 time"
            ) from None
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=UTC)
        delta = stamp - _EPOCH
        values.append((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    return pa.chunked_array([pa.array(values, type=pa.int64()).cast(pa.timestamp("us", "UTC"))])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
