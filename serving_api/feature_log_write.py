"""The writer thread's half of feature logging (serving_api.feature_log): queued frames
-> one Arrow table in Feast's logging schema -> Parquet files, as Feast's file offline
store writes logged features (pyarrow.dataset.write_dataset into the destination's
path, a uuid per write in the file names, Hive directories for `partition_by`).

Types are Feast's (feast.embedded_go.type_map.FEAST_TYPE_TO_ARROW_TYPE); map, struct
and json features, which Feast's logging has no type for, are logged as JSON text.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds

from featureline.object_store import Location
from featureline.online.value_proto import decode_plain, decode_value
from featureline.semantics import US
from featureline.serving_api.entities import coerce_column
from featureline.serving_api.feature_log_layout import LogLayout
from featureline.serving_api.frame import FeatureFrame, FrameColumn
from featureline.specs import LoggingSpec

Batch = Sequence[tuple[FeatureFrame, Mapping[str, Sequence[Any]]]]

_SCALAR: dict[str, pa.DataType] = {
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "string": pa.string(),
    "bytes": pa.binary(),
    "bool": pa.bool_(),
    "unix_timestamp": pa.timestamp("s"),
}
_JSON_TEXT = ("map", "struct", "json")
# Feast's PA_TIMESTAMP_TYPE (the `__timestamp` columns) and its system columns' types.
EVENT_TYPE = pa.timestamp("s", tz=UTC)
LOG_TS_TYPE = pa.timestamp("us", tz=UTC)
_DAY_US = 86_400 * US


def log_type(dtype: str) -> pa.DataType:
    if dtype in _SCALAR:
        return _SCALAR[dtype]
    if dtype.endswith("_list") and dtype[: -len("_list")] in _SCALAR:
        return pa.list_(_SCALAR[dtype[: -len("_list")]])
    return pa.string()  # map, struct, json: JSON text


def log_schema(layout: LogLayout) -> pa.Schema:
    fields: list[pa.Field] = []
    for kind, i in layout.order:
        if kind == "key":
            fields.append(pa.field(layout.keys[i].name, log_type(layout.keys[i].dtype)))
            continue
        feature = layout.features[i]
        fields += [
            pa.field(feature.name, log_type(feature.dtype)),
            pa.field(f"{feature.name}__timestamp", EVENT_TYPE),
            pa.field(f"{feature.name}__status", pa.int32()),
        ]
    fields += [
        pa.field("__log_timestamp", LOG_TS_TYPE),
        pa.field("__log_date", pa.date32()),
        pa.field("__request_id", pa.string()),
    ]
    return pa.schema(fields)


def _feature_values(col: FrameColumn, dtype: str) -> list[Any]:
    """Served values, decoded here from the stored bytes (None where not PRESENT)."""
    if col.raw is None:
        values = list(col.values)
    elif dtype in _SCALAR:
        values = [decode_value(r) if r else None for r in col.raw]
    else:
        values = [decode_plain(r) if r else None for r in col.raw]
    if dtype in _JSON_TEXT:
        values = [None if v is None else json.dumps(v, default=str) for v in values]
    return values


def _key_values(frame: FeatureFrame, entities: Mapping[str, Sequence[Any]], name: str,
                dtype: str, request: bool) -> list[Any]:  # fmt: skip
    for col in frame.key_columns:
        if col.name == name:
            return list(col.values)
    if name in entities:  # a request field: checked by the read, coerced as it was
        return coerce_column(name, dtype, entities[name], request)
    return [None] * frame.n_rows


def build_table(layout: LogLayout, batch: Batch) -> pa.Table:
    """The rows of `batch` (frames served for `layout.service`, in order) as one table."""
    columns: dict[str, list[Any]] = {name: [] for name in layout.column_names()}
    for frame, entities in batch:
        n = frame.n_rows
        for key in layout.keys:
            request = key.name in layout.request_fields
            columns[key.name] += _key_values(frame, entities, key.name, key.dtype, request)
        for feature, col in zip(layout.features, frame.columns, strict=True):
            columns[feature.name] += _feature_values(col, feature.dtype)
            columns[f"{feature.name}__timestamp"] += [e // US if e > 0 else None for e in col.event_us]
            columns[f"{feature.name}__status"] += col.statuses
        columns["__log_timestamp"] += [frame.t_us] * n
        columns["__log_date"] += [frame.t_us // _DAY_US] * n
        columns["__request_id"] += [uuid.uuid4().hex] * n
    schema = log_schema(layout)
    arrays = [pa.array(columns[f.name], f.type) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def write_table(table: pa.Table, spec: LoggingSpec) -> None:
    """One write, as Feast's file offline store's write_logged_features: a new uuid in
    the file names (writers never collide: N workers each write their own files)."""
    fs, base = Location(spec.path, spec.s3_endpoint_override).filesystem()
    ds.write_dataset(
        table,
        base_dir=base,
        filesystem=fs,
        basename_template=f"{uuid.uuid4().hex}-{{i}}.parquet",
        partitioning=list(spec.partition_by) or None,
        partitioning_flavor="hive" if spec.partition_by else None,
        format="parquet",
        existing_data_behavior="overwrite_or_ignore",
    )


def write_batch(layout: LogLayout, spec: LoggingSpec, batch: Batch) -> None:
    write_table(build_table(layout, batch), spec)


def read_log(spec: LoggingSpec, layout: LogLayout) -> ds.Dataset:
    """The logged rows of a service as a dataset with the log's schema (partition columns
    typed from it, not guessed from directory names)."""
    schema = log_schema(layout)
    fs, base = Location(spec.path, spec.s3_endpoint_override).filesystem()
    partitioning = None
    if spec.partition_by:
        partitioning = ds.partitioning(pa.schema([schema.field(p) for p in spec.partition_by]), flavor="hive")
    # Feast's partition columns start with "__" (`__log_date=2026-01-01/`): pyarrow skips
    # "_"-prefixed paths by default, so only hidden (".") ones are skipped here.
    return ds.dataset(
        base, schema=schema, filesystem=fs, format="parquet", partitioning=partitioning, ignore_prefixes=["."]
    )
