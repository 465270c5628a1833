"""Client SDK of the serving API (gRPC): `FeatureClient` (sync) and `AsyncFeatureClient`.

    with FeatureClient("127.0.0.1:6566") as client:
        rows = client.get_online_features(
            features=["user_profile:credit_limit"], entities={"user_id": [1, 2]}
        )
        rows.to_dict()            # {"user_id": [1, 2], "credit_limit": [...]}
        tensor = client.get_tensor("fraud_model_v1", {"user_id": ids, "merchant_id": ms, ...})
        tensor.values             # float32 [rows, cols], columns in the service's order
        tensor.mask               # bool    [rows, cols], True where the value is PRESENT
        tensor.columns            # the column names, tensor.omitted: non-numeric features

TLS: `FeatureClient(target, tls=ClientTls(ca="ca.pem"))` (serving_api.tls; add `cert=`
and `key=` for a server that requires client certificates, or `tls=True` to trust the
system's roots); a failed handshake is a TlsHandshakeError naming the target.

One channel per client, reused by every call; every call has a deadline (default
1 s) and is retried on UNAVAILABLE with jittered exponential backoff inside that
deadline. Failures are FeaturelineErrors: BadInputError (INVALID_ARGUMENT, auth),
NotFoundError (NOT_FOUND), ServiceUnavailableError (UNAVAILABLE, RESOURCE_EXHAUSTED),
ServingTimeoutError (DEADLINE_EXCEEDED), TlsHandshakeError (the TLS handshake failed:
not retried, as a retry fails the same way).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from featureline.errors import BadInputError, NotFoundError, ServiceUnavailableError
from featureline.online.value_proto import decode_native
from featureline.serving_api.frame import STATUS_NAMES
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.serving_api.tls import ClientTls, as_client_tls, is_tls_failure

DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 3
# 10 ms, 20 ms, 40 ms (jittered): a worker restart or a Redis blip on loopback heals
# in ~100 ms, well inside a 1 s deadline.
_BACKOFF_S = 0.01
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
]


class ServingTimeoutError(ServiceUnavailableError):
    """The call's deadline passed (retries included)."""


class TlsHandshakeError(ServiceUnavailableError):
    """The TLS handshake with the server failed (untrusted or missing certificate, a
    plaintext server, a client certificate the server refused)."""


def open_channel(
    target: str, tls: ClientTls | None, *, aio: bool = False, extra: Sequence[tuple[str, Any]] = ()
) -> Any:
    """A grpc (or grpc.aio) channel to `target`: TLS when `tls` is given."""
    options = [*_CHANNEL_OPTIONS, *extra]
    if tls is None:
        if aio:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.insecure_channel(target, options=options)
    credentials = tls.grpc_credentials()
    options += tls.grpc_options()
    if aio:
        return grpc.aio.secure_channel(target, credentials, options=options)
    return grpc.secure_channel(target, credentials, options=options)


@dataclass(frozen=True)
class FeatureTensor:
    """Numeric features of `rows` entities, in the request's (service's) column order."""

    values: np.ndarray  # float32 [rows, cols]; fill_value where mask is False
    mask: np.ndarray  # bool [rows, cols]; True where the status is PRESENT
    columns: list[str]
    omitted: list[str]  # non-numeric features of the request (not in the matrix)
    served_at_us: int

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def to_torch(self, device: str = "cpu") -> tuple[Any, Any]:
        """(values float32, mask bool) as torch tensors on `device` (imports torch)."""
        import torch

        values = torch.from_numpy(self.values).to(device, non_blocking=True)
        return values, torch.from_numpy(self.mask).to(device, non_blocking=True)


@dataclass(frozen=True)
class OnlineFeatures:
    """GetOnlineFeatures' answer, by column: join keys first, then features."""

    feature_names: list[str]
    values: dict[str, list[Any]]
    statuses: dict[str, list[str]]
    event_timestamps_us: dict[str, list[int]]  # 0 where there is none

    def to_dict(self) -> dict[str, list[Any]]:
        """Like Feast's OnlineResponse.to_dict()."""
        return {name: self.values[name] for name in self.feature_names}


def _value(v: Any) -> Any:
    """A response Value -> what Feast's OnlineResponse.to_dict() gives for it."""
    which = v.WhichOneof("val")
    if which is None:
        # Arrays, maps, json, struct: fields our Value message does not name; protobuf
        # keeps them as unknown fields, decoded from their bytes as Feast's SDK does.
        raw = v.SerializeToString()
        return decode_native(raw) if raw else None
    if which == "null_val":
        return None
    if which == "unix_timestamp_val":  # a UTC datetime, as in Feast
        return decode_native(v.SerializeToString())
    return getattr(v, which)


def _to_value(x: Any) -> Any:
    if x is None:
        return pb.Value(null_val=pb.NULL)
    if isinstance(x, bool | np.bool_):
        return pb.Value(bool_val=bool(x))
    if isinstance(x, int | np.integer):
        return pb.Value(int64_val=int(x))
    if isinstance(x, float | np.floating):
        return pb.Value(double_val=float(x))
    if isinstance(x, str):
        return pb.Value(string_val=x)
    if isinstance(x, bytes):
        return pb.Value(bytes_val=x)
    raise BadInputError(f"entity value {x!r} of type {type(x).__name__} is not supported")


def _entity_column(name: str, values: Sequence[Any] | np.ndarray) -> Any:
    """One EntityColumn; the list used follows the values' type (numpy arrays are fast)."""
    array = np.asarray(values)
    column = pb.EntityColumn(name=name)
    kind = array.dtype.kind
    if kind in "iu":
        column.int64_values.extend(array.astype(np.int64).tolist())
    elif kind == "b":
        column.bool_values.extend(array.tolist())
    elif kind == "f":
        column.double_values.extend(array.astype(np.float64).tolist())
    elif kind in "US" or (kind == "O" and all(isinstance(v, str) for v in array.tolist())):
        column.string_values.extend(str(v) for v in array.tolist())
    else:
        raise BadInputError(f"entity column {name!r}: values of type {array.dtype} are not supported")
    return column


def _kind(features: Sequence[str] | None, service: str | None) -> dict[str, Any]:
    if (features is None) == (service is None):
        raise BadInputError("give either features or feature_service")
    if service is not None:
        return {"feature_service": service}
    return {"features": pb.FeatureList(val=list(features or []))}


def online_request(
    features: Sequence[str] | None,
    service: str | None,
    entities: Mapping[str, Sequence[Any]],
    full_feature_names: bool,
) -> Any:
    return pb.GetOnlineFeaturesRequest(
        entities={k: pb.RepeatedValue(val=[_to_value(x) for x in v]) for k, v in entities.items()},
        full_feature_names=full_feature_names,
        **_kind(features, service),
    )


def tensor_request(
    features: Sequence[str] | None,
    service: str | None,
    entities: Mapping[str, Sequence[Any] | np.ndarray],
    full_feature_names: bool,
    fill_value: float,
) -> Any:
    return pb.GetOnlineTensorRequest(
        entities=[_entity_column(k, v) for k, v in entities.items()],
        full_feature_names=full_feature_names,
        fill_value=fill_value,
        **_kind(features, service),
    )


def online_from_message(message: Any) -> OnlineFeatures:
    names = list(message.metadata.feature_names.val)
    values, statuses, stamps = {}, {}, {}
    for name, vector in zip(names, message.results, strict=True):
        values[name] = [_value(v) for v in vector.values]
        statuses[name] = [STATUS_NAMES[s] for s in vector.statuses]
        stamps[name] = [t.seconds * 1_000_000 + t.nanos // 1000 for t in vector.event_timestamps]
    return OnlineFeatures(names, values, statuses, stamps)


def tensor_from_message(message: Any) -> FeatureTensor:
    rows, cols = int(message.rows), int(message.cols)
    values = np.frombuffer(message.values, dtype="<f4")
    present = np.frombuffer(message.present, dtype=np.uint8)
    if values.size != rows * cols or present.size != rows * cols:
        raise ServiceUnavailableError(
            f"malformed tensor from the server: {values.size} values and {present.size} "
            f"mask bytes for {rows} x {cols}"
        )
    # Copies (~0.1 ms for 1,000 x 30): arrays over the message's bytes are read-only,
    # and torch.from_numpy wants writable memory.
    return FeatureTensor(
        values.reshape(rows, cols).copy(),
        present.reshape(rows, cols).astype(bool),
        list(message.column_names),
        list(message.omitted_features),
        int(message.served_at_us),
    )


def _status(exc: grpc.RpcError) -> tuple[grpc.StatusCode | None, str | None]:
    """Code and details of a sync (grpc.Call) or asyncio (grpc.aio.AioRpcError) error:
    AioRpcError is no grpc.Call, but has the same two methods."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    return (code() if callable(code) else None, details() if callable(details) else None)


def translate_error(exc: grpc.RpcError, target: str, tls: bool | None = None) -> Exception:
    """A grpc error -> the FeaturelineError a person can act on (no grpc trace).
    `tls`: whether the client spoke TLS (None: unknown), for the hint on a closed socket."""
    code, details = _status(exc)
    detail = details or str(code)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(detail)
    if code in (
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
    ):
        return BadInputError(detail)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ServingTimeoutError(f"{target}: deadline exceeded ({detail})")
    if code == grpc.StatusCode.UNAVAILABLE and is_tls_failure(details):
        return TlsHandshakeError(
            f"feature server {target}: TLS handshake failed (check the CA, the client "
            f"certificate, and that the server speaks TLS): {detail}"
        )
    name = code.name if code is not None else "error"
    return ServiceUnavailableError(f"feature server {target}: {name}: {detail}{_closed_hint(detail, tls)}")


def _closed_hint(detail: str, tls: bool | None) -> str:
    """grpc reports a TLS 1.3 server refusing the client's certificate, and a TLS port
    answering a plaintext client, as a closed (or reset) socket, not as a handshake
    failure."""
    # Closed or reset, depending on timing: the refusal comes after TLS 1.3's handshake.
    lowered = detail.lower()
    if tls is None or not ("socket closed" in lowered or "connection reset by peer" in lowered):
        return ""
    if tls:
        return (
            " (a server that requires client certificates closes the connection of a client "
            "whose certificate it refuses: check the client certificate and key)"
        )
    return " (if the server speaks TLS, connect with tls=)"


def _retryable(exc: grpc.RpcError) -> bool:
    code, details = _status(exc)
    return code == grpc.StatusCode.UNAVAILABLE and not is_tls_failure(details)


def _pause(attempt: int) -> float:
    # Full jitter, so that clients that lost the server together do not return together.
    return random.uniform(0, _BACKOFF_S * 2**attempt)


class _Base:
    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        tls: ClientTls | bool | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.retries = retries
        self.tls = as_client_tls(tls)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else None

    def _method(self, channel: Any, name: str, response: Any) -> Any:
        return channel.unary_unary(
            f"/{SERVICE_NAME}/{name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )

    def _give_up(self, exc: grpc.RpcError, attempt: int, pause: float, end: float) -> bool:
        late = time.monotonic() + pause >= end
        return not _retryable(exc) or attempt >= self.retries or late


class FeatureClient(_Base):
    """Synchronous client (thread-safe: one grpc channel shared by every call)."""

    def __init__(self, target: str, *, rest_url: str | None = None, **options: Any) -> None:
        super().__init__(target, **options)
        # Pushes go to the REST port (POST /push); default: the gRPC host, port 8080.
        scheme = "https" if self.tls else "http"
        self.rest_url = rest_url or f"{scheme}://{target.rsplit(':', 1)[0]}:8080"
        self._token: str | None = options.get("token")
        self._channel = open_channel(target, self.tls)
        self._online = self._method(self._channel, "GetOnlineFeatures", pb.GetOnlineFeaturesResponse)
        self._tensor = self._method(self._channel, "GetOnlineTensor", pb.Tensor)
        self._describe = self._method(self._channel, "DescribeFeatures", pb.FeatureLayout)

    def __enter__(self) -> FeatureClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout_s: float | None) -> Any:
        end = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        attempt = 0
        while True:
            try:
                remaining = max(0.0, end - time.monotonic())
                return method(request, timeout=remaining, metadata=self.metadata)
            except grpc.RpcError as exc:
                pause = _pause(attempt)
                if self._give_up(exc, attempt, pause, end):
                    raise translate_error(exc, self.target, self.tls is not None) from None
                attempt += 1
                time.sleep(pause)

    def get_online_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        full_feature_names: bool = False,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        request = online_request(features, feature_service, entities, full_feature_names)
        return online_from_message(self._call(self._online, request, timeout_s))

    def push(self, push_source: str, df: Any, *, to: str = "online", timeout_s: float = 30.0) -> None:
        """Feast's push: rows (a pandas DataFrame, a pyarrow Table or columns) to every
        view `push_source` feeds, `to` online, offline or online_and_offline; through
        the REST port's POST /push (serving_api.push_client)."""
        from featureline.serving_api.push_client import push_rows

        push_rows(self.rest_url, push_source, df, to=to, token=self._token, timeout_s=timeout_s, tls=self.tls)

    def get_tensor(
        self,
        feature_service: str | None,
        entities: Mapping[str, Sequence[Any] | np.ndarray],
        *,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        fill_value: float = 0.0,
        timeout_s: float | None = None,
    ) -> FeatureTensor:
        """Numeric features as a float32 matrix + presence mask (service column order)."""
        request = tensor_request(features, feature_service, entities, full_feature_names, fill_value)
        return tensor_from_message(self._call(self._tensor, request, timeout_s))

    def describe(
        self,
        feature_service: str | None = None,
        *,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        """The server's FeatureLayout message (join keys, request fields, columns)."""
        request = pb.DescribeFeaturesRequest(
            full_feature_names=full_feature_names, **_kind(features, feature_service)
        )
        return self._call(self._describe, request, timeout_s)


class AsyncFeatureClient(_Base):
    """asyncio client (grpc.aio): `async with AsyncFeatureClient(target) as client:`."""

    def __init__(self, target: str, **options: Any) -> None:
        super().__init__(target, **options)
        self._channel = open_channel(target, self.tls, aio=True)
        self._online = self._method(self._channel, "GetOnlineFeatures", pb.GetOnlineFeaturesResponse)
        self._tensor = self._method(self._channel, "GetOnlineTensor", pb.Tensor)
        self._describe = self._method(self._channel, "DescribeFeatures", pb.FeatureLayout)

    async def __aenter__(self) -> AsyncFeatureClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: Any, request: Any, timeout_s: float | None) -> Any:
        end = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        attempt = 0
        while True:
            try:
                remaining = max(0.0, end - time.monotonic())
                return await method(request, timeout=remaining, metadata=self.metadata)
            except grpc.RpcError as exc:
                pause = _pause(attempt)
                if self._give_up(exc, attempt, pause, end):
                    raise translate_error(exc, self.target, self.tls is not None) from None
                attempt += 1
                await asyncio.sleep(pause)

    async def get_online_features(
        self,
        entities: Mapping[str, Sequence[Any]],
        *,
        features: Sequence[str] | None = None,
        feature_service: str | None = None,
        full_feature_names: bool = False,
        timeout_s: float | None = None,
    ) -> OnlineFeatures:
        request = online_request(features, feature_service, entities, full_feature_names)
        return online_from_message(await self._call(self._online, request, timeout_s))

    async def get_tensor(
        self,
        feature_service: str | None,
        entities: Mapping[str, Sequence[Any] | np.ndarray],
        *,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        fill_value: float = 0.0,
        timeout_s: float | None = None,
    ) -> FeatureTensor:
        request = tensor_request(features, feature_service, entities, full_feature_names, fill_value)
        return tensor_from_message(await self._call(self._tensor, request, timeout_s))

    async def describe(
        self,
        feature_service: str | None = None,
        *,
        features: Sequence[str] | None = None,
        full_feature_names: bool = False,
        timeout_s: float | None = None,
    ) -> Any:
        request = pb.DescribeFeaturesRequest(
            full_feature_names=full_feature_names, **_kind(features, feature_service)
        )
        return await self._call(self._describe, request, timeout_s)
