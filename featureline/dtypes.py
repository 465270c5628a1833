"""Every Feast value type Featureline carries, in one table.

A spec names a type by Feast's ValueType name, lower case, with DOUBLE / FLOAT spelled
float64 / float32 (`int64`, `float32_list`, `map`, ...). Each row says how the type
travels on every path: its Feast ValueType number (which is also the field number of
its `val` oneof in Feast's ValueProto, the bytes in Redis), the protobuf field name,
the Arrow type of its offline column (as pyarrow prints it; `arrow_type` builds it),
the DuckDB and Spark SQL types of that column, how REST writes it as JSON, and whether
the tensor call carries it (as float32). This module imports neither pyarrow nor
pyspark at load (serving imports it; a serving image need not have Spark):
`arrow_type` imports pyarrow when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# How a value is written in Feast's REST JSON (feast.feature_server_utils):
#   plain: as is; float: non-finite as "NaN"/"Infinity"/"-Infinity"; bytes: base64;
#   *_list: the same per element; map: a dict of recursively converted values;
#   json: the stored JSON text, as a string.
JsonForm = str


@dataclass(frozen=True)
class DTypeInfo:
    name: str  # the spec name: Feast's ValueType name, lower case, float32/float64
    value_type: int  # feast.types.ValueType number == ValueProto `val` field number
    proto_field: str  # the ValueProto oneof field (`int64_val`, `map_val`, ...)
    spark: str  # Spark SQL type of the offline column (pyspark's simpleString)
    json_form: JsonForm
    arrow: str  # Arrow type of the offline column, as pyarrow prints it; "" if none
    duckdb: str  # DuckDB type of that column (DuckDB's name for the Arrow type)
    numeric: bool = False  # carried by the tensor call (as float32; bool as 0/1)
    element: str = ""  # an array's element dtype

    @property
    def is_scalar(self) -> bool:
        return self.value_type <= 8

    @property
    def tensor_dtype(self) -> str:
        """The numpy dtype of its tensor column; "" when the tensor call leaves it out."""
        return TENSOR_DTYPE if self.numeric else ""


TENSOR_DTYPE = "float32"
_TS_ARROW = "timestamp[us, tz=UTC]"
# (name, ValueType number, Spark type, JSON form, Arrow, DuckDB, numeric) of the eight
# primitives.
_SCALARS = (
    ("bytes", 1, "binary", "bytes", "binary", "BLOB", False),
    ("string", 2, "string", "plain", "string", "VARCHAR", False),
    ("int32", 3, "int", "plain", "int32", "INTEGER", True),
    ("int64", 4, "bigint", "plain", "int64", "BIGINT", True),
    ("float64", 5, "double", "float", "double", "DOUBLE", True),
    ("float32", 6, "float", "float", "float", "FLOAT", True),
    ("bool", 7, "boolean", "plain", "bool", "BOOLEAN", True),
    # Seconds since the epoch in Redis and JSON; a UTC microsecond timestamp offline.
    ("unix_timestamp", 8, "timestamp", "plain", _TS_ARROW, "TIMESTAMP WITH TIME ZONE", True),
)
_PROTO_SCALAR = {"float64": "double", "float32": "float"}


def _table() -> dict[str, DTypeInfo]:
    rows: list[DTypeInfo] = []
    for name, number, spark, form, arrow, duckdb, numeric in _SCALARS:
        proto = _PROTO_SCALAR.get(name, name)
        rows.append(DTypeInfo(name, number, f"{proto}_val", spark, form, arrow, duckdb, numeric))
        # Arrays: ValueType number + 10 (BYTES_LIST = 11 ... UNIX_TIMESTAMP_LIST = 18).
        rows.append(
            DTypeInfo(
                f"{name}_list",
                number + 10,
                f"{proto}_list_val",
                f"array<{spark}>",
                f"{form}_list",
                f"list<item: {arrow}>",
                f"{duckdb}[]",
                element=name,
            )  # fmt: skip
        )
    # Map and Struct are a ValueProto Map (string -> ValueProto); Json is its text. Map
    # and Struct have no one Arrow type (a Struct's fields are the source's): their
    # offline columns keep the source's type.
    rows.append(DTypeInfo("map", 20, "map_val", "map<string,string>", "map", "", ""))
    rows.append(DTypeInfo("json", 32, "json_val", "string", "json", "string", "VARCHAR"))
    rows.append(DTypeInfo("struct", 34, "struct_val", "struct", "map", "", ""))
    return {r.name: r for r in rows}


DTYPES: dict[str, DTypeInfo] = _table()
NUMERIC_DTYPES = frozenset(n for n, d in DTYPES.items() if d.numeric)
# Types whose stored bytes decode to a list or dict (no shared cache of decoded values).
COMPOUND_DTYPES = frozenset(n for n, d in DTYPES.items() if not d.is_scalar)
# Types a Feast entity key may have (feast.infra.key_encoding_utils).
KEY_DTYPES = ("string", "int64", "int32", "bytes", "unix_timestamp")
BY_VALUE_TYPE: dict[int, DTypeInfo] = {d.value_type: d for d in DTYPES.values()}


def supported() -> str:
    return ", ".join(DTYPES)


def from_feast_name(name: str) -> str:
    """A Feast ValueType name (`DOUBLE_LIST`, `INT64`, `MAP`) -> our dtype name;
    '' for a type Featureline does not carry (UNKNOWN, sets, UUID, ...)."""
    lower = name.lower()
    for feast_name, ours in (("double", "float64"), ("float", "float32")):
        if lower == feast_name or lower.startswith(feast_name + "_"):
            lower = ours + lower[len(feast_name) :]
    return lower if lower in DTYPES else ""


def arrow_type(name: str) -> Any:
    """The pyarrow DataType of dtype `name`'s offline column (KeyError for a dtype
    without one: map, struct). pyarrow is imported here, not at module load: the
    serving process imports this table and never builds Arrow types."""
    import pyarrow as pa

    d = DTYPES[name]
    if not d.arrow:
        raise KeyError(f"{name} has no one Arrow type (its columns keep the source's)")
    if d.element:
        return pa.list_(arrow_type(d.element))
    if d.arrow == _TS_ARROW:
        return pa.timestamp("us", tz="UTC")
    return pa.type_for_alias(d.arrow)


def by_spark(spark: str) -> DTypeInfo | None:
    """The scalar row whose offline column has this Spark SQL type (`bigint`, ...)."""
    for d in DTYPES.values():
        if d.is_scalar and d.spark == spark:
            return d
    return None
