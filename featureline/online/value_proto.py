"""Feast ValueProtos of the compound types (arrays, Map, Json, Struct), by hand.

The eight primitive types keep their fast encoders in featureline.online.feast_format;
values of the types here go through these per-value functions instead (a separate
branch, never on the numeric/string path). The bytes are what feast 0.67 writes
(feast.type_map.python_values_to_proto_values, then upb's SerializeToString):

- arrays: the ValueProto field 11-18 holding a *List message; numbers packed in its
  field 1, strings and bytes one field 1 each; an empty array is an empty message.
- Map / Struct: field 20 / 34 holding a Map: one entry per key, each with its key
  (field 1) and a ValueProto (field 2), both always written. A Map's values get their
  type from the Python value, as Feast infers it (int -> int64, float -> double, ...).
  upb writes map entries in a per-process hash order (two runs of Feast differ), so
  only the entries are Feast's, not their order: we keep the dict's order.
- Json: field 32, the JSON text (a value that is not a string is json.dumps'd).

Decoding gives plain Python values: lists, dicts with str keys, the JSON text as a str,
timestamps as epoch seconds (`decode_plain`); `decode_native` gives what Feast's SDK
gives (feast.type_map.feast_value_type_to_python_type): parsed JSON and UTC datetimes.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import UTC, date, datetime
from typing import Any

from featureline.dtypes import BY_VALUE_TYPE, DTYPES
from featureline.errors import BadInputError

_MAP_LIST_FIELDS = (21, 35)  # map_list_val, struct_list_val
_JSON_LIST_FIELD = 33
_NULL_FIELD = 19
# feast.type_map.NULL_TIMESTAMP_INT_VALUE: a NaT stored in a timestamp array.
NULL_TIMESTAMP = -9223372036854775808
# The serialized ValueProto Feast writes for a null timestamp (unix_timestamp_val = NaT).
NULL_TIMESTAMP_VALUE = b"@" + b"\x80" * 9 + b"\x01"
_F64 = struct.Struct("<d")
_F32 = struct.Struct("<f")
_PACK_F64 = _F64.pack
_PACK_F32 = _F32.pack
_UNPACK_F64 = _F64.unpack_from
_UNPACK_F32 = _F32.unpack_from
_TAG = {name: bytes([d.value_type << 3]) for name, d in DTYPES.items() if d.is_scalar}


def encode_varint(n: int) -> bytes:
    """Protobuf base-128 varint; a negative int64 as its 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return encode_varint(number << 3 | 2) + encode_varint(len(payload)) + payload


def epoch_seconds(value: Any) -> int:
    """A timestamp (datetime, numpy/pandas timestamp, or seconds) -> whole epoch seconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp())
    if hasattr(value, "astype") and "datetime64" in str(getattr(value, "dtype", "")):
        return int(value.astype("datetime64[s]").astype("int64"))
    return int(value)


# --- the eight primitives: the hot path of every writer and reader ---------------------------


def encode_value(dtype: str, value: Any) -> bytes:
    """A serialized feast ValueProto; None -> empty message (Feast's null), or for a
    timestamp Feast's NaT value (what feast materialize writes for it)."""
    if value is None:
        return NULL_TIMESTAMP_VALUE if dtype == "unix_timestamp" else b""
    if dtype == "float64":
        return b")" + _PACK_F64(value)  # field 5, wire type 1
    if dtype == "int64" or dtype == "int32":
        return _TAG[dtype] + encode_varint(int(value))
    if dtype == "string":
        raw = str(value).encode()
        return b"\x12" + encode_varint(len(raw)) + raw
    if dtype == "float32":
        return b"5" + _PACK_F32(value)  # field 6, wire type 5
    if dtype == "bool":
        return b"8" + (b"\x01" if value else b"\x00")
    if dtype == "bytes":
        raw = bytes(value)
        return b"\n" + encode_varint(len(raw)) + raw
    if dtype == "unix_timestamp":
        return b"@" + encode_varint(epoch_seconds(value))
    return encode_compound(dtype, value)


def decode_value(buf: bytes | None) -> Any:
    """Inverse of encode_value (compound types: decode_plain); None / empty -> None."""
    if not buf:
        return None
    tag, pos = read_varint(buf, 0)
    number, wire = tag >> 3, tag & 7
    if wire == 1:
        return _UNPACK_F64(buf, pos)[0]
    if wire == 5:
        return _UNPACK_F32(buf, pos)[0]
    if wire == 0:
        raw, _ = read_varint(buf, pos)
        if number == 7:
            return bool(raw)
        if number == 3:  # int32: sign-extended to 64 bits on the wire
            raw &= 0xFFFFFFFF
            return raw - (1 << 32) if raw >= 1 << 31 else raw
        if number == _NULL_FIELD:
            return None
        return raw - (1 << 64) if raw >= 1 << 63 else raw
    if wire == 2 and number <= 2:
        length, pos = read_varint(buf, pos)
        raw_bytes = buf[pos : pos + length]
        return raw_bytes.decode() if number == 2 else bytes(raw_bytes)
    if wire == 2:
        return decode_any(buf)
    raise ValueError(f"unsupported ValueProto wire type {wire} (field {number})")


# --- encoding ------------------------------------------------------------------------------


def _packed(element: str, items: list[Any]) -> bytes:
    if element == "float64":
        return b"".join(_F64.pack(float(x)) for x in items)
    if element == "float32":
        return b"".join(_F32.pack(float(x)) for x in items)
    if element == "bool":
        return bytes(1 if x else 0 for x in items)
    if element == "unix_timestamp":
        return b"".join(encode_varint(epoch_seconds(x)) for x in items)
    return b"".join(encode_varint(int(x)) for x in items)


def _list_payload(element: str, items: Any) -> bytes:
    items = list(items)
    if None in items:
        raise BadInputError(f"an array of {element} holds a null element; Feast cannot store it")
    if element in ("string", "bytes"):
        raws = [x.encode() if isinstance(x, str) else bytes(x) for x in items]
        return b"".join(_field(1, r) for r in raws)
    packed = _packed(element, items)
    return _field(1, packed) if packed else b""


def _as_dict(value: Any, dtype: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, list):  # an Arrow map column reads as (key, value) pairs
        value = dict(value)
    if not isinstance(value, dict):
        if dtype == "struct" and hasattr(value, "items"):
            return dict(value.items())
        raise BadInputError(f"a {dtype} value must be a dict, got {type(value).__name__}")
    return value


def _map_payload(value: dict[str, Any]) -> bytes:
    entries = [_field(1, _field(1, str(k).encode()) + _field(2, _infer_encode(v))) for k, v in value.items()]
    return b"".join(entries)


# Feast's python_type_to_feast_value_type by Python / numpy type name.
_INFERRED = {
    "bool": "bool", "bool_": "bool", "int": "int64", "int64": "int64", "uint64": "int64",
    "int32": "int32", "int16": "int32", "int8": "int32", "uint32": "int64", "uint16": "int32",
    "uint8": "int32", "float": "float64", "float64": "float64", "float32": "float32",
    "str": "string", "bytes": "bytes", "datetime": "unix_timestamp", "timestamp": "unix_timestamp",
    "date": "unix_timestamp", "datetime64": "unix_timestamp",
}  # fmt: skip


def _infer_encode(value: Any) -> bytes:
    """A Map's value, typed from its Python type as Feast infers it."""
    if value is None:
        return b""
    if isinstance(value, dict):
        return _field(20, _map_payload(value))
    if getattr(value, "ndim", 0) == 1:  # a numpy array (pandas reads lists so)
        value = list(value)
    if isinstance(value, list | tuple):
        items = [x for x in value if x is not None]
        if items and isinstance(items[0], dict):
            return _field(21, b"".join(_field(1, _map_payload(m)) for m in items))
        if not items:
            raise BadInputError("an empty array in a map has no type Feast can infer")
        element = _INFERRED.get(type(items[0]).__name__.lower())
        if element is None:
            kind = type(items[0]).__name__
            raise BadInputError(f"a map holds an array of {kind}, which Feast cannot store")
        return encode_compound(f"{element}_list", value)
    dtype = _INFERRED.get(type(value).__name__.lower())
    if dtype is None:
        raise BadInputError(f"a map holds a {type(value).__name__}, which Feast cannot store")
    return encode_value(dtype, value)


def _json_text(value: Any) -> str:
    if isinstance(value, str):
        try:
            json.loads(value)
        except ValueError as exc:
            raise BadInputError(f"a json value is not valid JSON: {exc}") from None
        return value
    return json.dumps(value)


def encode_compound(dtype: str, value: Any) -> bytes:
    """A serialized ValueProto of an array, map, json or struct value; None -> b""."""
    if value is None:
        return b""
    d = DTYPES[dtype]
    if d.element:
        return _field(d.value_type, _list_payload(d.element, value))
    if dtype == "json":
        return _field(32, _json_text(value).encode())
    if dtype in ("map", "struct"):
        return _field(d.value_type, _map_payload(_as_dict(value, dtype)))
    raise ValueError(f"unsupported feature type {dtype}")


# --- decoding ------------------------------------------------------------------------------


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def message_fields(buf: bytes) -> list[tuple[int, int, Any]]:
    """(field number, wire type, int value or bytes payload) of one message; ValueError
    for a truncated or malformed one (also what parses untrusted gRPC request bodies)."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    try:
        while pos < len(buf):
            tag, pos = read_varint(buf, pos)
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                raw, pos = read_varint(buf, pos)
                out.append((number, wire, raw))
                continue
            if wire == 2:
                size, pos = read_varint(buf, pos)
            elif wire in (1, 5):
                size = 8 if wire == 1 else 4
            else:
                raise ValueError(f"unsupported protobuf wire type {wire} (field {number})")
            if pos + size > len(buf):
                raise ValueError(f"protobuf field {number} is cut short")
            out.append((number, wire, buf[pos : pos + size]))
            pos += size
    except IndexError:  # a varint running past the end
        raise ValueError("protobuf message is cut short") from None
    return out


def _signed(raw: int, element: str) -> Any:
    if element == "bool":
        return bool(raw)
    if element == "int32":
        raw &= 0xFFFFFFFF
        return raw - (1 << 32) if raw >= 1 << 31 else raw
    return raw - (1 << 64) if raw >= 1 << 63 else raw


def _list_items(element: str, payload: bytes) -> list[Any]:
    items: list[Any] = []
    for _, wire, raw in message_fields(payload):
        if element in ("string", "bytes"):
            items.append(raw.decode() if element == "string" else bytes(raw))
        elif element in ("float64", "float32"):
            fmt = _F64 if element == "float64" else _F32
            items += [v for (v,) in fmt.iter_unpack(raw)]
        elif wire == 0:
            items.append(_signed(raw, element))
        else:  # packed varints
            pos = 0
            while pos < len(raw):
                value, pos = read_varint(raw, pos)
                items.append(_signed(value, element))
    return items


def _timestamp(seconds: int) -> datetime | None:
    return None if seconds == NULL_TIMESTAMP else datetime.fromtimestamp(seconds, tz=UTC)


def _map(payload: bytes, native: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for _, _, entry in message_fields(payload):
        key, value = "", b""
        for number, _, raw in message_fields(entry):
            if number == 1:
                key = raw.decode()
            elif number == 2:
                value = raw
        out[key] = decode_any(value, native)
    return out


def decode_any(buf: bytes, native: bool = False) -> Any:
    """A serialized ValueProto of any supported type -> its Python value; b"" -> None."""
    if not buf:
        return None
    ((number, wire, raw),) = message_fields(buf)[-1:]
    if number == _NULL_FIELD:
        return None
    if number in (20, 34):
        return _map(raw, native)
    if number in _MAP_LIST_FIELDS:
        return [_map(m, native) for _, _, m in message_fields(raw)]
    if number == 32:
        text = raw.decode()
        return _parse_json(text) if native else text
    if number == _JSON_LIST_FIELD:
        texts = [r.decode() for _, _, r in message_fields(raw)]
        return [_parse_json(t) for t in texts] if native else texts
    d = BY_VALUE_TYPE.get(number)
    if d is None:
        raise ValueError(f"unsupported ValueProto field {number}")
    if d.element:
        items = _list_items(d.element, raw)
        if native and d.element == "unix_timestamp":
            return [_timestamp(s) for s in items]
        return items
    value = decode_value(buf)
    if native and number == 8:
        return _timestamp(value)
    return value


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def decode_plain(buf: bytes | None) -> Any:
    return decode_any(buf or b"")


def decode_native(buf: bytes | None) -> Any:
    return decode_any(buf or b"", native=True)


def plain_value(dtype: str, value: Any) -> Any:
    """A value read from Arrow (offline, historical) in the form decode_plain gives the
    stored one, so both compare with ==: timestamps as epoch seconds (Feast stores whole
    seconds), an Arrow map's (key, value) pairs as a dict, arrays as lists."""
    if value is None:
        return None
    d = DTYPES[dtype]
    if dtype == "unix_timestamp":
        return epoch_seconds(value)
    if d.element == "unix_timestamp":
        return [epoch_seconds(v) for v in value]
    if d.element:
        return list(value)
    if dtype in ("map", "struct"):
        return _as_dict(value, dtype)
    return value


def to_json_native(value: Any) -> Any:
    """A decoded value -> its form in Feast's REST JSON (feast_server_utils): bytes as
    base64, non-finite floats as "NaN"/"Infinity"/"-Infinity", recursively."""
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, bytes):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, list):
        return [to_json_native(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json_native(v) for k, v in value.items()}
    return value
