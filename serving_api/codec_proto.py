"""gRPC messages of featureline.serving.v1, encoded by hand on the response side.

A response is built by concatenating bytes: the values read from Redis already are
serialized Feast ValueProtos (the same message as our `Value`), so they are embedded
as they are, never decoded; a protobuf Python object per value would cost ~1 us each
(20,000 of them for a batch of 1,000 entities x 20 features). Requests are parsed by
the generated classes (upb, in C) and turned into plain Python lists here.
"""

from __future__ import annotations

import functools
from typing import Any, Final

from google.protobuf.message import DecodeError

from featureline.dtypes import DTYPES
from featureline.errors import BadInputError
from featureline.online.feast_format import encode_timestamp, encode_value, encode_varint
from featureline.serving_api.frame import FeatureFrame, FrameColumn
from featureline.serving_api.memo import memoized
from featureline.serving_api.proto import pb
from featureline.serving_api.tensor import TensorParts

_VALUE_FIELDS: Final = {d.proto_field for d in DTYPES.values() if d.is_scalar}


# Lengths under 128 are one byte: a table lookup instead of encode_varint's loop (a
# batch-1 response has ~40 length prefixes, nearly all short).
_SHORT: Final = [bytes((n,)) for n in range(128)]
# Serialized Timestamps by microsecond value: an entity's event times recur across
# requests; bounded, emptied when full.
_STAMPS: Final[dict[int, bytes]] = {}
_STAMPS_CAP: Final = 200_000


def _length(n: int) -> bytes:
    return _SHORT[n] if n < 128 else encode_varint(n)


def _len_field(tag: bytes, payload: bytes) -> bytes:
    return tag + _length(len(payload)) + payload


def _repeated_messages(tag: bytes, items: list[bytes]) -> bytes:
    short = _SHORT
    return b"".join([tag + (short[n] if (n := len(i)) < 128 else encode_varint(n)) + i for i in items])


def _stamp(ts_us: int) -> bytes:
    return memoized(_STAMPS, _STAMPS_CAP, ts_us, encode_timestamp)


def _column_values(col: FrameColumn) -> list[bytes]:
    if col.raw is not None:
        return [r or b"" for r in col.raw]
    dtype = col.dtype
    return [encode_value(dtype, v) for v in col.values]


def _feature_vector(col: FrameColumn, stamp_cache: dict[int, bytes]) -> bytes:
    values = _repeated_messages(b"\x0a", _column_values(col))
    statuses = _len_field(b"\x12", bytes(col.statuses))  # packed enum; each < 128
    stamps = stamp_cache.get(id(col.event_us))
    if stamps is None:
        stamps = _repeated_messages(
            b"\x1a", [s if (s := _STAMPS.get(t)) is not None else _stamp(t) for t in col.event_us]
        )
        stamp_cache[id(col.event_us)] = stamps
    return values + statuses + stamps


def encode_online_response(frame: FeatureFrame) -> bytes:
    """Serialized GetOnlineFeaturesResponse (and feast.serving's, same numbers)."""
    columns = frame.all_columns
    metadata = _metadata(tuple([c.name for c in columns]))
    stamp_cache: dict[int, bytes] = {}
    results = _repeated_messages(b"\x12", [_feature_vector(c, stamp_cache) for c in columns])
    return metadata + results


@functools.lru_cache(maxsize=1024)
def _metadata(names: tuple[str, ...]) -> bytes:
    """The response's metadata field (its feature names): the same for every request
    of one plan."""
    encoded = _repeated_messages(b"\x0a", [name.encode() for name in names])
    return _len_field(b"\x0a", _len_field(b"\x0a", encoded))


def value_to_python(value: Any) -> Any:
    """A `Value` message -> its Python scalar (None for null or unset)."""
    which = value.WhichOneof("val")
    if which is None or which == "null_val":
        return None
    if which not in _VALUE_FIELDS:
        raise BadInputError(f"entity values of kind {which} are not supported")
    return getattr(value, which)


def _parse(message_class: Any, data: bytes) -> Any:
    try:
        return message_class.FromString(data)
    except DecodeError:
        name = message_class.DESCRIPTOR.name
        raise BadInputError(f"the request is not a valid {name} message") from None


def _request_kind(request: Any) -> tuple[list[str] | None, str | None]:
    kind = request.WhichOneof("kind")
    if kind == "feature_service":
        return None, request.feature_service
    if kind == "features":
        return list(request.features.val), None
    raise BadInputError("set either `features` or `feature_service`")


def parse_online_request(
    data: bytes,
) -> tuple[list[str] | None, str | None, dict[str, list[Any]], bool]:
    """GetOnlineFeaturesRequest bytes -> (refs, service, entity columns, full names)."""
    request = _parse(pb.GetOnlineFeaturesRequest, data)
    refs, service = _request_kind(request)
    columns: dict[str, list[Any]] = {}
    for source in (request.entities, request.request_context):
        # Keys, then one lookup each: upb's map .items() costs ~3 us for two entries,
        # its keys and lookups ~1 us.
        for name in source:
            columns[name] = [value_to_python(v) for v in source[name].val]
    return refs, service, columns, request.full_feature_names


def entity_column_values(column: Any) -> list[Any]:
    for name in ("int64_values", "string_values", "double_values", "bool_values"):
        values = getattr(column, name)
        if len(values):
            return list(values)
    return []


def parse_describe_request(data: bytes) -> tuple[list[str] | None, str | None, bool]:
    request = _parse(pb.DescribeFeaturesRequest, data)
    refs, service = _request_kind(request)
    return refs, service, request.full_feature_names


def parse_tensor_request(
    data: bytes,
) -> tuple[list[str] | None, str | None, dict[str, list[Any]], bool, float]:
    request = _parse(pb.GetOnlineTensorRequest, data)
    refs, service = _request_kind(request)
    columns: dict[str, list[Any]] = {}
    for column in request.entities:
        if not column.name:
            raise BadInputError("an entity column has no name")
        columns[column.name] = entity_column_values(column)
    return refs, service, columns, request.full_feature_names, request.fill_value


def tensor_message(parts: TensorParts, served_at_us: int) -> bytes:
    """The serialized featureline.serving.v1.Tensor of a tensor call (gRPC and REST)."""
    message = pb.Tensor(
        rows=parts.values.shape[0],
        cols=parts.values.shape[1],
        column_names=parts.column_names,
        values=parts.values.tobytes(),
        present=parts.present.tobytes(),
        omitted_features=parts.omitted,
        served_at_us=served_at_us,
    )
    return bytes(message.SerializeToString())
