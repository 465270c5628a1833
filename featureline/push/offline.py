"""Pushed rows -> the view's batch source in the Parquet offline store, atomically.

Two layouts, as the source's path says:
- a directory: the Hive-partitioned layout of featureline.offline (`date=YYYY-MM-DD/`),
  one new file per touched date, beside the existing ones;
- a single Parquet file (Feast's FileSource default, e.g. `feast init`'s template): the
  file is rewritten with the rows appended, as Feast's file offline store does.

Atomic: every new file is written under a temporary name first and renamed only when
all are written (a failure removes the temporary files and leaves the store as it was);
a single file is replaced by one rename, under a lock so two pushes do not lose each
other's rows. The rows take the columns and types the stored data has (as Feast
requires the frame's columns to be the source's); Kafka identity columns that a
pushed row cannot have are -1 (featureline.offline: "not from Kafka").
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featureline.errors import BadInputError
from featureline.object_store import is_uri
from featureline.offline import (
    ARROW_TYPES,
    KAFKA_OFFSET,
    KAFKA_PARTITION,
    PARTITION_COLUMN,
    TS_TYPE,
    dataset,
    partition_dir,
)
from featureline.push.frame import ViewRows, source_columns
from featureline.specs import ViewSpec

_FILLED = {KAFKA_PARTITION: -1, KAFKA_OFFSET: -1}


def source_path(view: ViewSpec) -> Path:
    source = view.batch_source
    if source is None:
        raise BadInputError(f"view {view.name!r} has no file batch source to write offline rows to")
    if is_uri(source.path):
        raise BadInputError(f"offline pushes to {source.path!r} are not supported (local paths only)")
    return Path(source.path)


def _single_file(path: Path) -> bool:
    return path.is_file() or (not path.exists() and path.suffix == ".parquet")


def stored_schema(view: ViewSpec, path: Path) -> pa.Schema:
    """The columns and types of the data already stored; for an empty store, the
    view's own (join keys, features, event and created times)."""
    if path.is_file():
        return pq.read_schema(path)
    if path.is_dir() and any(path.rglob("*.parquet")):
        schema = dataset(path).schema
        return pa.schema([f for f in schema if f.name != PARTITION_COLUMN])
    mapping = dict(view.batch_source.field_mapping) if view.batch_source else {}
    column_of = {feature: column for column, feature in mapping.items()}
    ts_col, created_col = source_columns(view)
    fields = [pa.field(column_of.get(f.name, f.name), ARROW_TYPES.get(f.dtype, pa.null()))
              for f in (*view.join_keys, *view.features)]  # fmt: skip
    fields.append(pa.field(ts_col, TS_TYPE))
    if created_col:
        fields.append(pa.field(created_col, TS_TYPE))
    return pa.schema(fields)


def _column(name: str, values: list[Any], target: pa.DataType, in_seconds: bool) -> pa.Array:
    try:
        if pa.types.is_timestamp(target) and all(v is None or isinstance(v, int) for v in values):
            scale = 1_000_000 if in_seconds else 1
            us = pa.array([None if v is None else v * scale for v in values], pa.int64())
            return us.cast(TS_TYPE).cast(target)
        if pa.types.is_null(target):  # a Map or Struct in an empty store: as the values are
            return pa.array(values)
        return pa.array(values, type=target)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        message = f"column {name!r}: its values do not fit the stored type {target}: {exc}"
        raise BadInputError(message) from None


def offline_table(rows: ViewRows, frame: Mapping[str, list[Any]], schema: pa.Schema) -> pa.Table:
    """The rows as a table of the stored schema; BadInputError naming a missing or
    unexpected column (nothing is written then)."""
    unix_cols = {f.name for f in rows.view.features if f.dtype == "unix_timestamp"}
    extra = sorted(set(frame) - set(schema.names))
    if extra:
        raise BadInputError(
            f"the frame has columns the offline store of view {rows.view.name!r} does not: "
            f"{', '.join(map(repr, extra))} (stored columns: {', '.join(schema.names)})"
        )
    arrays = []
    n = len(rows)
    for field in schema:
        if field.name in rows.columns:
            values = rows.columns[field.name]
        elif field.name in frame:
            values = frame[field.name]
        elif field.name in _FILLED:
            values = [_FILLED[field.name]] * n
        else:
            raise BadInputError(
                f"the frame has no column {field.name!r}, which the offline store of view "
                f"{rows.view.name!r} holds"
            )
        arrays.append(_column(field.name, values, field.type, field.name in unix_cols))
    # By name: a column of an empty store whose type the values decide (Map, Struct).
    return pa.Table.from_arrays(arrays, names=schema.names)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_offline(rows: ViewRows, frame: Mapping[str, list[Any]]) -> list[Path]:
    """Append the rows to the view's batch source; returns the files written."""
    path = source_path(rows.view)
    if len(rows) == 0:
        return []
    ts_col, _ = source_columns(rows.view)
    if _single_file(path):
        with _locked(path):
            table = offline_table(rows, frame, stored_schema(rows.view, path))
            if path.is_file():
                table = pa.concat_tables([pq.read_table(path), table])
            _commit([(table, path)])
        return [path]
    table = offline_table(rows, frame, stored_schema(rows.view, path))
    days = pc.strftime(table[ts_col].cast(TS_TYPE), format="%Y-%m-%d", locale="C")
    parts = []
    for day in pc.unique(days).to_pylist():
        target = partition_dir(path, day) / f"push-{uuid.uuid4().hex[:12]}.parquet"
        parts.append((table.filter(pc.equal(days, day)), target))
    _commit(parts)
    return [p for _, p in parts]


def _commit(parts: list[tuple[pa.Table, Path]]) -> None:
    """Write every part under a temporary name, then rename them all; on a failure
    before the renames, the temporary files are removed and nothing is visible."""
    staged: list[tuple[Path, Path]] = []
    try:
        for table, target in parts:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = _tmp(target)
            staged.append((tmp, target))
            pq.write_table(table, tmp, compression="zstd")
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
