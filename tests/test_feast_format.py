"""Our hand-written Redis codec is byte-identical to Feast 0.67's."""

from __future__ import annotations

import pytest
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey
from feast.protos.feast.types.Value_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from featureline.online import feast_format as ff


@pytest.mark.parametrize("v", [0, 1, -5, 2**62, -(2**63), 2**63 - 1])
def test_int64(v: int) -> None:
    assert ff.encode_value("int64", v) == Value(int64_val=v).SerializeToString()
    assert ff.decode_value(Value(int64_val=v).SerializeToString()) == v


@pytest.mark.parametrize("v", [0.0, 1.5, -3.25e100, 5e-324])
def test_float64(v: float) -> None:
    assert ff.encode_value("float64", v) == Value(double_val=v).SerializeToString()
    assert ff.decode_value(Value(double_val=v).SerializeToString()) == v


def test_other_scalars() -> None:
    for v in (-7, 5, 0):
        assert ff.encode_value("int32", v) == Value(int32_val=v).SerializeToString()
        assert ff.decode_value(Value(int32_val=v).SerializeToString()) == v
    assert ff.encode_value("string", "héllo") == Value(string_val="héllo").SerializeToString()
    assert ff.decode_value(Value(string_val="héllo").SerializeToString()) == "héllo"
    assert ff.encode_value("bool", True) == Value(bool_val=True).SerializeToString()
    assert ff.decode_value(ff.encode_value("bool", False)) is False
    assert ff.encode_value("float32", 1.5) == Value(float_val=1.5).SerializeToString()
    assert ff.encode_value("bytes", b"\x00\x01") == Value(bytes_val=b"\x00\x01").SerializeToString()
    assert ff.encode_value("int64", None) == Value().SerializeToString() == b""
    assert ff.decode_value(b"") is None


def test_entity_keys() -> None:
    ek = EntityKey(join_keys=["user_id"], entity_values=[Value(int64_val=42)])
    assert ff.redis_key("p", ["user_id"], ["int64"], [42]) == _redis_key("p", ek)
    assert ff.single_key_encoder("p", "user_id", "int64")(42) == _redis_key("p", ek)
    sk = EntityKey(join_keys=["merchant_id"], entity_values=[Value(string_val="m_1")])
    assert ff.single_key_encoder("p", "merchant_id", "string")("m_1") == _redis_key("p", sk)
    compound = EntityKey(
        join_keys=["user_id", "merchant_id"],
        entity_values=[Value(int64_val=42), Value(string_val="m1")],
    )
    ours = ff.redis_key("p", ["user_id", "merchant_id"], ["int64", "string"], [42, "m1"])
    assert ours == _redis_key("p", compound)


def test_fields_and_timestamps() -> None:
    assert ff.feature_field("user_txn_stats", "sum_amount_1h") == _mmh3("user_txn_stats:sum_amount_1h")
    t = Timestamp(seconds=1_700_000_000, nanos=123_000)
    assert ff.encode_timestamp(1_700_000_000_000_123) == t.SerializeToString()
    assert ff.decode_timestamp(t.SerializeToString()) == 1_700_000_000_000_123
    assert ff.decode_timestamp(b"") == 0
    assert ff.decode_timestamp(None) is None


def test_order_value_compares_as_string() -> None:
    assert ff.order_value(10, 5) > ff.order_value(10, 4)
    assert ff.order_value(10, 0) > ff.order_value(10, None)
    assert ff.order_value(11, None) > ff.order_value(10, 10**15)
