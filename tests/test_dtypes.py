"""The one table of Feast value types (featureline.dtypes): every type the repo readers
accept has a row, and each row's Feast, ValueProto, Arrow, DuckDB, Spark and tensor
forms are what those libraries call the same type."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from featureline.dtypes import DTYPES, NUMERIC_DTYPES, arrow_type, from_feast_name
from featureline.specs import FieldSpec, ProjectionSpec, RepoSpec, ServiceSpec, ViewSpec


def test_every_feast_value_type_the_readers_accept_has_a_row() -> None:
    import feast.types as ft
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.value_type import ValueType

    accepted = {from_feast_name(v.name): v for v in ValueType if from_feast_name(v.name)}
    assert set(accepted) == set(DTYPES)
    for name, value_type in accepted.items():
        d = DTYPES[name]
        assert value_type.value == d.value_type, name
        assert Value.DESCRIPTOR.fields_by_name[d.proto_field].number == d.value_type, name
    # feast.types (a Field's dtype): the primitives and their arrays read to the same rows.
    primitives = [t for t in vars(ft).values() if isinstance(t, ft.PrimitiveFeastType)]
    read = set()
    scalars = (ft.Bytes, ft.String, ft.Int32, ft.Int64, ft.Float64, ft.Float32, ft.Bool, ft.UnixTimestamp)
    arrays = [ft.Array(p) for p in scalars]
    for t in [*primitives, *arrays]:
        name = from_feast_name(t.to_value_type().name)
        if name:
            assert DTYPES[name].value_type == t.to_value_type().value
            read.add(name)
    assert {n for n, d in DTYPES.items() if d.is_scalar or d.element} <= read


def test_arrow_and_duckdb_forms_round_trip() -> None:
    import duckdb

    typed = {n: d for n, d in DTYPES.items() if d.arrow}
    assert set(DTYPES) - set(typed) == {"map", "struct"}  # their columns keep the source's
    for name, d in typed.items():
        assert str(arrow_type(name)) == d.arrow
    empty = pa.table({n: pa.array([], type=arrow_type(n)) for n in typed})  # noqa: F841 (read by duckdb)
    relation = duckdb.sql("SELECT * FROM empty")
    assert [str(t) for t in relation.types] == [d.duckdb for d in typed.values()]


def _spark(arrow: pa.DataType) -> Any:
    from pyspark.sql import types as T

    if pa.types.is_list(arrow):
        return T.ArrayType(_spark(arrow.value_type))
    if pa.types.is_timestamp(arrow):
        return T.TimestampType()
    return {
        pa.int32(): T.IntegerType(), pa.int64(): T.LongType(), pa.float32(): T.FloatType(),
        pa.float64(): T.DoubleType(), pa.string(): T.StringType(), pa.binary(): T.BinaryType(),
        pa.bool_(): T.BooleanType(),
    }[arrow]  # fmt: skip


def test_spark_forms_are_pysparks_types() -> None:
    from pyspark.sql import types as T

    for name, d in DTYPES.items():
        if d.arrow:
            assert _spark(arrow_type(name)).simpleString() == d.spark, name
    assert T.MapType(T.StringType(), T.StringType()).simpleString() == DTYPES["map"].spark


def test_the_table_does_not_import_pyarrow_or_pyspark() -> None:
    import subprocess
    import sys

    code = "import sys, featureline.dtypes; print(sorted({'pyarrow', 'pyspark'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _timestamp_repo() -> RepoSpec:
    view = ViewSpec(
        name="v",
        kind="batch",
        entities=("user",),
        join_keys=(FieldSpec("user_id", "int64"),),
        features=(FieldSpec("age", "int64"), FieldSpec("seen", "unix_timestamp"), FieldSpec("tag", "string")),
        ttl_s=86_400,
        timestamp_field="event_timestamp",
    )
    service = ServiceSpec("svc", (ProjectionSpec("v", "v", ("age", "seen", "tag")),))
    return RepoSpec("t", {}, {"v": view}, {}, {"svc": service})


def test_tensor_and_worker_layout_take_the_same_numeric_types() -> None:
    """A unix_timestamp feature is a model input in the worker layout and a column of
    the tensor call (two numeric sets once disagreed on it)."""
    from featureline.serving_api.frame import FeatureFrame, FrameColumn
    from featureline.serving_api.tensor import frame_to_tensor
    from featureline.serving_api.workers.layout import feature_layout

    layout = feature_layout(_timestamp_repo(), "svc")
    assert layout.names == ("v__age", "v__seen") and layout.omitted == ("v__tag",)
    frame = FeatureFrame(1, 0, columns=[
        FrameColumn.from_values("v__age", "int64", [30]),
        FrameColumn.from_values("v__seen", "unix_timestamp", [1_700_000_000]),
        FrameColumn.from_values("v__tag", "string", ["x"]),
    ])  # fmt: skip
    parts = frame_to_tensor(frame)
    assert tuple(parts.column_names) == layout.names and parts.omitted == list(layout.omitted)
    assert parts.values.dtype.name == DTYPES["unix_timestamp"].tensor_dtype
    assert {n for n, d in DTYPES.items() if d.tensor_dtype} == NUMERIC_DTYPES


@pytest.mark.parametrize("name", ["int64", "float32_list", "json"])
def test_rows_name_their_forms(name: str) -> None:
    d = DTYPES[name]
    assert d.proto_field.endswith("_val") and d.spark and d.duckdb
