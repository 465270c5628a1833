"""The ValueProto codec of every type against Feast 0.67's own conversion
(feast.type_map): the bytes `feast materialize` writes for the same Arrow values,
and the Python values Feast's SDK decodes them to."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest
from types_repo import plain

from featureline.dtypes import DTYPES, NUMERIC_DTYPES, from_feast_name
from featureline.errors import BadInputError
from featureline.online.value_proto import (
    decode_native,
    decode_plain,
    decode_value,
    encode_value,
    to_json_native,
)

_TS = pa.timestamp("us", tz="UTC")
CASES: dict[str, pa.Array] = {
    "int32": pa.array([1, -(2**31), None], pa.int32()),
    "int64": pa.array([2**62, -1, None], pa.int64()),
    "float32": pa.array([0.1, math.inf, None], pa.float32()),
    "float64": pa.array([1 / 3, -math.inf, None], pa.float64()),
    "string": pa.array(["é", "", None]),
    "bytes": pa.array([b"\x00\xff", b"", None]),
    "bool": pa.array([True, False, None]),
    "unix_timestamp": pa.array([datetime(2024, 1, 1, 12, 0, 1, 500_000), None], _TS),
    "int32_list": pa.array([[1, -2, 2**31 - 1], [], None], pa.list_(pa.int32())),
    "int64_list": pa.array([[1, -2, 2**62], [], None], pa.list_(pa.int64())),
    "float32_list": pa.array([[1.5, math.nan, -0.0], [], None], pa.list_(pa.float32())),
    "float64_list": pa.array([[1.5, math.inf, 1e300], None], pa.list_(pa.float64())),
    "string_list": pa.array([["a", "", "é"], [], None], pa.list_(pa.string())),
    "bytes_list": pa.array([[b"a", b"", b"\x00"], [], None], pa.list_(pa.binary())),
    "bool_list": pa.array([[True, False], [], None], pa.list_(pa.bool_())),
    "unix_timestamp_list": pa.array(
        [[datetime(2024, 1, 1, 12, 0, 1), datetime(1969, 12, 31, 23, 59, 59)], [], None], pa.list_(_TS)
    ),
    "json": pa.array(['{"a": 1, "b": [1, 2]}', "[1, 2]", None, '"x"']),
    "map": pa.array([{"vehicle_type": "truck", "rating": "3.9"}, None]),
    "struct": pa.array(
        [{"name": "d", "age": 5, "f": 1.5, "ok": True, "none": None, "l": [1, 2], "s": ["a"], "m": {"x": 1}}]
    ),
}


def _feast_value_type(dtype: str) -> Any:
    from feast.value_type import ValueType

    name = dtype.upper().replace("FLOAT64", "DOUBLE").replace("FLOAT32", "FLOAT")
    return ValueType[name]


def test_every_type_is_in_the_table() -> None:
    assert set(CASES) == set(DTYPES)
    assert from_feast_name("DOUBLE_LIST") == "float64_list" and from_feast_name("FLOAT") == "float32"
    assert from_feast_name("UUID") == "" and from_feast_name("UNKNOWN") == ""
    numeric = {"int32", "int64", "float32", "float64", "bool", "unix_timestamp"}
    assert numeric == NUMERIC_DTYPES


@pytest.mark.parametrize("dtype", list(CASES))
def test_bytes_and_values_are_feasts(dtype: str) -> None:
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type, python_values_to_proto_values

    arr = CASES[dtype]
    # What feast materialize does with a column (feast.utils._columns_to_proto_values).
    feast = [
        v.SerializeToString()
        for v in python_values_to_proto_values(arr.to_numpy(zero_copy_only=False), _feast_value_type(dtype))
    ]
    ours = [encode_value(dtype, v) for v in arr.to_pylist()]
    if dtype in ("map", "struct"):  # upb writes map entries in a per-process hash order
        assert [decode_plain(b) for b in ours] == [decode_plain(b) for b in feast]
        assert [len(b) for b in ours] == [len(b) for b in feast]
    else:
        assert ours == feast
    for raw in feast:
        expected = feast_value_type_to_python_type(Value.FromString(raw))
        assert plain(decode_native(raw)) == plain(expected), raw
        assert plain(decode_value(raw)) == plain(decode_plain(raw))


def test_plain_and_json_forms() -> None:
    raw = encode_value("map", {"f": math.nan, "b": b"\x01", "l": [1.5, math.inf], "n": None, "t": "x"})
    assert to_json_native(decode_plain(raw)) == {"f": "NaN", "b": "AQ==", "l": [1.5, "Infinity"], "n": None,
                                                 "t": "x"}  # fmt: skip
    assert decode_plain(encode_value("json", {"a": [1]})) == '{"a": [1]}'  # the stored text
    assert decode_native(encode_value("json", {"a": [1]})) == {"a": [1]}
    stamp = decode_native(encode_value("unix_timestamp", 1_700_000_000))
    assert stamp == datetime.fromtimestamp(1_700_000_000, UTC)
    assert decode_native(encode_value("unix_timestamp", None)) is None  # Feast's NaT


def test_bad_values_are_named() -> None:
    with pytest.raises(BadInputError, match="not valid JSON"):
        encode_value("json", "{nope")
    with pytest.raises(BadInputError, match="null element"):
        encode_value("int64_list", [1, None])
    with pytest.raises(BadInputError, match="must be a dict"):
        encode_value("map", 5)
