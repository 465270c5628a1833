"""Feast's gRPC writes on our gRPC port: `GrpcFeatureServer/Push` and
`GrpcFeatureServer/WriteToOnlineStore` (the service of `feast serve -t grpc`).

Feast's requests carry one row: `features` (column -> text) or `typed_features`
(column -> feast.types.Value). They are decoded by hand (a few map entries; Feast's
generated modules would import feast, ~5 s) into a one-row frame and written by the
same code as REST's /push and /write-to-online-store (serving_api.rest_write), so the
checks, the last-write-wins and the offline append are the same. Text values are read
as their column's declared type ("0.5" for a Float32); a Value keeps its own type, and
a UnixTimestamp value in a time column is whole seconds. The answer is Feast's
`{status: true}`; a failure is INVALID_ARGUMENT / NOT_FOUND naming the field, or
UNAVAILABLE, never INTERNAL for bad input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from featureline.errors import BadInputError, NotFoundError
from featureline.online.value_proto import message_fields
from featureline.push.frame import text_value
from featureline.serving_api.grpc_methods import CallInfo, Method, RpcFailure
from featureline.serving_api.proto import FEAST_GRPC_SERVER_NAME, pb
from featureline.serving_api.rest_write import WriteHandlers
from featureline.serving_api.service import RequestTimer
from featureline.specs import ViewSpec

_OK = b"\x08\x01"  # PushResponse / WriteToOnlineStoreResponse {status: true}


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a message: an int, or the bytes of a length-delimited field."""
    try:
        parsed = message_fields(buf)
    except ValueError:
        raise BadInputError("the request is not a valid protobuf message") from None
    return [(number, value) for number, wire, value in parsed if wire in (0, 2)]


def _entry(raw: bytes) -> tuple[str, bytes]:
    key, value = "", b""
    for number, field in _fields(raw):
        if number == 1 and isinstance(field, bytes):
            key = field.decode()
        elif number == 2 and isinstance(field, bytes):
            value = field
    return key, value


def _typed_value(raw: bytes) -> Any:
    value = pb.Value.FromString(raw)
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return None
    out = getattr(value, kind)
    if kind == "unix_timestamp_val":
        return datetime.fromtimestamp(out, UTC).isoformat()
    return out


def parse_request(
    buf: bytes, numbers: dict[str, int]
) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """(text features, typed features, scalar fields by name) of a Feast write request."""
    text: dict[str, str] = {}
    typed: dict[str, Any] = {}
    scalars: dict[str, Any] = {}
    names = {number: name for name, number in numbers.items()}
    for number, field in _fields(buf):
        name = names.get(number)
        if name == "features" and isinstance(field, bytes):
            key, value = _entry(field)
            text[key] = value.decode()
        elif name == "typed_features" and isinstance(field, bytes):
            key, value = _entry(field)
            typed[key] = _typed_value(value)
        elif name is not None:
            scalars[name] = field.decode() if isinstance(field, bytes) else field
    if text and typed:
        raise BadInputError("only one of 'features' or 'typed_features' may be set, not both")
    return text, typed, scalars


def _frame(views: list[ViewSpec], text: dict[str, str], typed: dict[str, Any]) -> dict[str, list[Any]]:
    if typed:
        return {k: [v] for k, v in typed.items()}
    view = views[0]
    mapping = dict(view.batch_source.field_mapping) if view.batch_source else {}
    column_of = {feature: column for column, feature in mapping.items()}
    dtypes = {column_of.get(f.name, f.name): f.dtype for f in (*view.join_keys, *view.features)}
    return {k: [text_value(k, dtypes[k], v) if k in dtypes else v] for k, v in text.items()}


_PUSH = {"features": 1, "stream_feature_view": 2, "allow_registry_cache": 3, "to": 4, "typed_features": 5}
_WRITE = {"features": 1, "feature_view_name": 2, "allow_registry_cache": 3, "typed_features": 4}


class GrpcWriteMethods:
    """Feast's Push and WriteToOnlineStore, by full method path."""

    def __init__(self, writes: WriteHandlers) -> None:
        self.writes = writes

    async def _run(self, endpoint: str, work: Callable[[], Awaitable[None]]) -> bytes:
        timer = RequestTimer(endpoint)
        try:
            await work()
        except Exception as exc:  # every failure becomes a status code, never a trace
            _, code, message = timer.failed(exc)
            if isinstance(exc, NotFoundError) and endpoint == "grpc/Push":
                code = "INVALID_ARGUMENT"  # Feast's code for an unknown push source
            raise RpcFailure(code, message) from None
        timer.done("OK")
        return _OK

    def push(self, request: bytes, call: CallInfo) -> Awaitable[bytes]:
        async def work() -> None:
            text, typed, scalars = parse_request(request, _PUSH)
            name = str(scalars.get("stream_feature_view", ""))
            views = self.writes.core.repo.views_of_push_source(name)
            body = {"push_source_name": name, "to": scalars.get("to") or "online",
                    "df": _frame(views, text, typed)}  # fmt: skip
            await self.writes.push_data(body, {"authorization": call.authorization or ""})

        return self._run("grpc/Push", work)

    def write(self, request: bytes, call: CallInfo) -> Awaitable[bytes]:
        async def work() -> None:
            text, typed, scalars = parse_request(request, _WRITE)
            name = str(scalars.get("feature_view_name", ""))
            view = self.writes.core.repo.view(name)
            body = {"feature_view_name": name, "df": _frame([view], text, typed)}
            await self.writes.write_data(body, {"authorization": call.authorization or ""})

        return self._run("grpc/WriteToOnlineStore", work)

    def by_path(self) -> dict[str, Method]:
        return {
            f"/{FEAST_GRPC_SERVER_NAME}/Push": self.push,
            f"/{FEAST_GRPC_SERVER_NAME}/WriteToOnlineStore": self.write,
        }
