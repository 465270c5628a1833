"""Typed tensor client: a FeatureService's vectors as numpy arrays or torch tensors.

Built on the serving API's gRPC tensor call (`GetOnlineTensor`): one dense row-major
float32 matrix plus a presence mask per call, columns in the feature service's order.
What it adds for model code:

- one channel per client, reused by every call (a new HTTP/2 connection costs ~1 ms);
- a deadline on every call (default 2 s), and retries on UNAVAILABLE (a restarting
  server, Redis briefly down) with exponential backoff, inside the same deadline;
- the server's column layout checked against the one the caller expects, once;
- errors as FeaturelineErrors naming the cause (never a grpc stack trace): bad input
  and unknown names exit 2, an unreachable or overloaded server exits 3.

`TensorClient` is synchronous (thread-safe: grpc channels are), `AsyncTensorClient` is
for asyncio (`grpc.aio`). torch is imported only by `FeatureTensor.torch()`.
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
from serving_api.proto import pb, pb_grpc

DEFAULT_DEADLINE_S = 2.0
DEFAULT_RETRIES = 3
# First retry after 20 ms, doubling: 20 + 40 + 80 ms covers a server restart on
# loopback (~100 ms) without stretching a 2 s deadline.
BACKOFF_S = 0.02
# 4096 entities x 40 features x 5 bytes is ~0.8 MB; 64 MB leaves room for wide services.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
]


class DeadlineExceededError(ServiceUnavailableError):
    """The call did not finish within its deadline (retries included)."""


@dataclass(frozen=True)
class FeatureTensor:
    """Features of `rows` entities: values float32 and present uint8, both [rows, cols]."""

    values: np.ndarray
    present: np.ndarray
    columns: tuple[str, ...]
    omitted: tuple[str, ...]  # non-numeric features of the service, not in the matrix
    served_at_us: int

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    def torch(self, device: str = "cpu") -> tuple[Any, Any]:
        """(values float32, present bool) as torch tensors on `device`."""
        import torch

        values = torch.from_numpy(np.array(self.values, copy=True)).to(device)
        present = torch.from_numpy(np.array(self.present, copy=True)).to(device).bool()
        return values, present


@dataclass(frozen=True)
class TensorColumn:
    name: str
    view: str
    feature: str
    dtype: str
    on_demand: bool


@dataclass(frozen=True)
class ServerLayout:
    """What the server resolves a feature service to (DescribeFeatures)."""

    join_keys: tuple[str, ...]
    request_fields: tuple[str, ...]
    tensor_columns: tuple[TensorColumn, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.tensor_columns)


def entity_column(name: str, values: Sequence[Any] | np.ndarray) -> Any:
    """One EntityColumn message; the value list is chosen by the values' type."""
    column = pb.EntityColumn(name=name)
    array = np.asarray(values)
    kind = array.dtype.kind
    if kind in "iu":
        column.int64_values.extend(array.astype(np.int64).tolist())
    elif kind == "b":
        column.bool_values.extend(array.tolist())
    elif kind == "f":
        column.double_values.extend(array.astype(np.float64).tolist())
    elif kind in "UO":
        column.string_values.extend(str(v) for v in array.tolist())
    else:
        raise BadInputError(f"entity column {name!r}: unsupported value type {array.dtype}")
    return column


def tensor_request(
    service: str, entities: Mapping[str, Sequence[Any] | np.ndarray], full_feature_names: bool
) -> Any:
    lengths = {name: len(v) for name, v in entities.items()}
    if len(set(lengths.values())) > 1:
        raise BadInputError(f"entity columns differ in length: {lengths}")
    return pb.GetOnlineTensorRequest(
        feature_service=service,
        entities=[entity_column(n, v) for n, v in entities.items()],
        full_feature_names=full_feature_names,
        fill_value=0.0,
    )


def tensor_from_message(message: Any) -> FeatureTensor:
    rows, cols = int(message.rows), int(message.cols)
    values = np.frombuffer(message.values, dtype="<f4")
    present = np.frombuffer(message.present, dtype=np.uint8)
    if values.size != rows * cols or present.size != rows * cols:
        raise ServiceUnavailableError(
            f"the server sent a torn tensor: {values.size} values and {present.size} mask "
            f"bytes for {rows} x {cols}"
        )
    return FeatureTensor(
        values.reshape(rows, cols),
        present.reshape(rows, cols),
        tuple(message.column_names),
        tuple(message.omitted_features),
        int(message.served_at_us),
    )


def layout_from_message(message: Any) -> ServerLayout:
    columns = tuple(
        TensorColumn(c.name, c.view, c.feature, c.dtype, c.on_demand) for c in message.columns if c.in_tensor
    )
    return ServerLayout(tuple(message.join_keys), tuple(message.request_fields), columns)


def translate_error(exc: grpc.RpcError, target: str, what: str) -> Exception:
    """A grpc error -> the FeaturelineError a person can act on."""
    code = exc.code() if hasattr(exc, "code") else None
    detail = (exc.details() if hasattr(exc, "details") else None) or str(code)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFoundError(detail)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return BadInputError(detail)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceededError(f"{what} on {target}: deadline exceeded ({detail})")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return BadInputError(f"{what} on {target}: {detail}")
    return ServiceUnavailableError(f"{what} on {target} failed: {code.name if code else ''} {detail}")


def _retryable(exc: grpc.RpcError) -> bool:
    return hasattr(exc, "code") and exc.code() == grpc.StatusCode.UNAVAILABLE


def _backoff(attempt: int) -> float:
    # Full jitter: workers that lost the server together do not come back together.
    return random.uniform(0, BACKOFF_S * (2**attempt))


def _metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    return (("authorization", f"Bearer {token}"),) if token else None


@dataclass(frozen=True)
class ClientOptions:
    service: str
    full_feature_names: bool = True
    deadline_s: float = DEFAULT_DEADLINE_S
    retries: int = DEFAULT_RETRIES
    token: str | None = None


class TensorClient:
    """Synchronous: `TensorClient("127.0.0.1:6566", service="fraud_training_v1")`."""

    def __init__(
        self, target: str, service: str, *, channel: grpc.Channel | None = None, **options: Any
    ) -> None:
        self.target = target
        self.options = ClientOptions(service=service, **options)
        self._own_channel = channel is None
        self._channel = channel or grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.FeatureServingStub(self._channel)

    def __enter__(self) -> TensorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def _call(self, method: str, request: Any, deadline_s: float | None) -> Any:
        budget = self.options.deadline_s if deadline_s is None else deadline_s
        end = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                return getattr(self._stub, method)(
                    request, timeout=max(0.0, end - time.monotonic()),
                    metadata=_metadata(self.options.token),
                )  # fmt: skip
            except grpc.RpcError as exc:
                pause = _backoff(attempt)
                if (
                    not _retryable(exc)
                    or attempt >= self.options.retries
                    or (time.monotonic() + pause >= end)
                ):
                    raise translate_error(exc, self.target, method) from None
                attempt += 1
                time.sleep(pause)

    def layout(self, deadline_s: float | None = None) -> ServerLayout:
        request = pb.DescribeFeaturesRequest(
            feature_service=self.options.service, full_feature_names=self.options.full_feature_names
        )
        return layout_from_message(self._call("DescribeFeatures", request, deadline_s))

    def fetch(
        self, entities: Mapping[str, Sequence[Any] | np.ndarray], deadline_s: float | None = None
    ) -> FeatureTensor:
        """Features of the entity rows (join keys and request fields, equal lengths)."""
        request = tensor_request(self.options.service, entities, self.options.full_feature_names)
        return tensor_from_message(self._call("GetOnlineTensor", request, deadline_s))


class AsyncTensorClient:
    """asyncio: `async with AsyncTensorClient(target, service=...) as client: ...`."""

    def __init__(self, target: str, service: str, **options: Any) -> None:
        self.target = target
        self.options = ClientOptions(service=service, **options)
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = pb_grpc.FeatureServingStub(self._channel)

    async def __aenter__(self) -> AsyncTensorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, method: str, request: Any, deadline_s: float | None) -> Any:
        budget = self.options.deadline_s if deadline_s is None else deadline_s
        end = time.monotonic() + budget
        attempt = 0
        while True:
            try:
                return await getattr(self._stub, method)(
                    request, timeout=max(0.0, end - time.monotonic()),
                    metadata=_metadata(self.options.token),
                )  # fmt: skip
            except grpc.RpcError as exc:
                pause = _backoff(attempt)
                if (
                    not _retryable(exc)
                    or attempt >= self.options.retries
                    or (time.monotonic() + pause >= end)
                ):
                    raise translate_error(exc, self.target, method) from None
                attempt += 1
                await asyncio.sleep(pause)

    async def layout(self, deadline_s: float | None = None) -> ServerLayout:
        request = pb.DescribeFeaturesRequest(
            feature_service=self.options.service, full_feature_names=self.options.full_feature_names
        )
        return layout_from_message(await self._call("DescribeFeatures", request, deadline_s))

    async def fetch(
        self, entities: Mapping[str, Sequence[Any] | np.ndarray], deadline_s: float | None = None
    ) -> FeatureTensor:
        request = tensor_request(self.options.service, entities, self.options.full_feature_names)
        return tensor_from_message(await self._call("GetOnlineTensor", request, deadline_s))
