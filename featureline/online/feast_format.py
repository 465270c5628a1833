"""Feast's Redis layout for latest values, encoded without importing feast.

Byte-compatible with feast 0.67 `RedisOnlineStore` (entity_key_serialization_version 3),
so values `feast materialize` wrote are served by us and values we write Feast reads:

- key:    serialize_entity_key(entity key) + project (utf-8)
- fields: mmh3_32("{view}:{feature}") as 4 little-endian bytes -> serialized ValueProto
          "_ts:{view}" -> serialized google.protobuf.Timestamp
Ours, ignored by Feast's reader (it HMGETs the fields above only):
          "_fl_ts:{view}" -> fixed-width "event_us:created_us" + the `_ts` bytes
          written with it, for event-time last-write-wins compared inside Redis
          (featureline.online.writer).

The protobuf encodings are written by hand: protobuf's Python objects cost ~1 us each
and importing feast's generated modules pulls in feast (~5 s).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import mmh3

from featureline.dtypes import DTYPES

# The ValueProto codec lives in value_proto; callers import it from here too.
from featureline.online.value_proto import decode_value as decode_value
from featureline.online.value_proto import encode_value as encode_value
from featureline.online.value_proto import encode_varint, epoch_seconds, read_varint

# Feast ValueType numbers (feast/protos/feast/types/Value.proto).
VALUE_TYPE = {name: d.value_type for name, d in DTYPES.items() if d.is_scalar}
_PACK_I32 = struct.Struct("<i").pack
_PACK_U32 = struct.Struct("<I").pack
_PACK_I64 = struct.Struct("<q").pack


# --- entity keys ------------------------------------------------------------------------


def _entity_value_bytes(dtype: str, value: Any) -> tuple[int, bytes]:
    if dtype == "string":
        return VALUE_TYPE["string"], str(value).encode()
    if dtype == "int64":
        return VALUE_TYPE["int64"], _PACK_I64(int(value))
    if dtype == "int32":
        return VALUE_TYPE["int32"], _PACK_I32(int(value))
    if dtype == "bytes":
        return VALUE_TYPE["bytes"], bytes(value)
    if dtype == "unix_timestamp":
        return VALUE_TYPE["unix_timestamp"], _PACK_I64(epoch_seconds(value))
    raise ValueError(f"entity keys of type {dtype} are not supported by Feast's key format")


def serialize_entity_key(join_keys: Sequence[str], dtypes: Sequence[str], values: Sequence[Any]) -> bytes:
    """Feast's serialize_entity_key, version 3: keys sorted by name."""
    # One key: Feast's fast path, no sort.
    order = [0] if len(join_keys) == 1 else sorted(range(len(join_keys)), key=lambda i: join_keys[i])
    out = [_PACK_U32(len(join_keys))]
    for i in order:
        name = join_keys[i].encode()
        out += [_PACK_U32(VALUE_TYPE["string"]), _PACK_U32(len(name)), name]
    for i in order:
        vtype, raw = _entity_value_bytes(dtypes[i], values[i])
        out += [_PACK_U32(vtype), _PACK_U32(len(raw)), raw]
    return b"".join(out)


def redis_key(project: str, join_keys: Sequence[str], dtypes: Sequence[str], values: Sequence[Any]) -> bytes:
    return serialize_entity_key(join_keys, dtypes, values) + project.encode()


def single_key_encoder(project: str, join_key: str, dtype: str) -> Any:
    """A fast encoder for the common one-join-key case: value -> Redis key bytes."""
    head = _PACK_U32(1) + _PACK_U32(2) + _PACK_U32(len(join_key.encode())) + join_key.encode()
    tail = project.encode()
    if dtype == "int64":
        prefix = head + _PACK_U32(4) + _PACK_U32(8)
        return lambda v: prefix + _PACK_I64(int(v)) + tail
    if dtype == "string":
        prefix = head + _PACK_U32(2)

        def encode_str(v: Any) -> bytes:
            raw = str(v).encode()
            return prefix + _PACK_U32(len(raw)) + raw + tail

        return encode_str
    return lambda v: redis_key(project, [join_key], [dtype], [v])


# --- field names --------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def feature_field(view: str, feature: str) -> bytes:
    """Feast's _mmh3("{view}:{feature}"): murmur3_32, unsigned, 4 bytes little-endian."""
    return struct.pack("<I", mmh3.hash(f"{view}:{feature}", signed=False))


def ts_field(view: str) -> bytes:
    return f"_ts:{view}".encode()


def order_field(view: str) -> bytes:
    return f"_fl_ts:{view}".encode()


def order_value(event_us: int, created_us: int | None) -> bytes:
    """Fixed width so that Redis (Lua) compares it as a string: event, then created."""
    return b"%020d:%020d" % (event_us, -1 if created_us is None else created_us + 1)


# --- timestamps ---------------------------------------------------------------------------


def encode_timestamp(ts_us: int) -> bytes:
    """A serialized google.protobuf.Timestamp."""
    seconds, micros = divmod(ts_us, 1_000_000)
    out = b""
    if seconds:
        out += b"\x08" + encode_varint(seconds)
    if micros:
        out += b"\x10" + encode_varint(micros * 1000)
    return out


def decode_timestamp(buf: bytes | None) -> int | None:
    """Timestamp bytes -> microseconds since epoch; None when absent."""
    if buf is None:
        return None
    seconds = nanos = 0
    pos = 0
    while pos < len(buf):
        tag, pos = read_varint(buf, pos)
        raw, pos = read_varint(buf, pos)
        if tag >> 3 == 1:
            seconds = raw - (1 << 64) if raw >= 1 << 63 else raw
        elif tag >> 3 == 2:
            nanos = raw
    return seconds * 1_000_000 + nanos // 1000
