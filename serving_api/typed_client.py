"""Typed tensor client: one FeatureService's vectors as numpy arrays or torch tensors.

A thin layer over the serving SDK (`serving_api.client`), which already reuses one
channel per client, puts a deadline on every call and retries UNAVAILABLE with
jittered backoff inside it. What this adds for model code:

- the client is bound to one feature service, with full feature names
  (`view__feature`: the names training used, which never collide);
- `layout()` is the server's tensor columns for that service, and `expect(columns)`
  checks them against the columns a model was trained on, in order, once, before any
  scoring: a model must never read a column under another column's name;
- `fetch_torch` hands the matrix and mask to torch on a device.

    with TensorClient("127.0.0.1:6566", "fraud_training_v1") as client:
        client.expect(model_columns)
        tensor = client.fetch({"user_id": ids, "merchant_id": merchants})
        tensor.values, tensor.mask      # float32 / bool [rows, cols]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from featureline.errors import BadInputError
from featureline.serving_api.client import AsyncFeatureClient, FeatureClient, FeatureTensor, open_channel
from featureline.serving_api.proto import pb

Entities = Mapping[str, Sequence[Any] | np.ndarray]

__all__ = [
    "AsyncTensorClient",
    "ColumnMismatchError",
    "FeatureTensor",
    "ServerLayout",
    "TensorClient",
    "TensorColumn",
]


class ColumnMismatchError(BadInputError):
    """The server's columns for a service are not the ones a model expects (exit 2)."""


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

    service: str
    join_keys: tuple[str, ...]
    request_fields: tuple[str, ...]
    tensor_columns: tuple[TensorColumn, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.tensor_columns)

    def expect(self, columns: Sequence[str], target: str) -> None:
        if tuple(columns) != self.names:
            raise ColumnMismatchError(
                f"the serving API at {target} returns columns {list(self.names)} for feature "
                f"service {self.service!r}; expected {list(columns)}: does it serve another "
                "version of the repo?"
            )


def layout_from_message(service: str, message: Any) -> ServerLayout:
    columns = tuple(
        TensorColumn(c.name, c.view, c.feature, c.dtype, c.on_demand) for c in message.columns if c.in_tensor
    )
    return ServerLayout(service, tuple(message.join_keys), tuple(message.request_fields), columns)


def tensor_to_torch(tensor: FeatureTensor, device: str) -> tuple[Any, Any]:
    """(values float32, mask bool) on `device` (imports torch)."""
    import torch

    return torch.from_numpy(tensor.values).to(device), torch.from_numpy(tensor.mask).to(device)


class TensorClient:
    """Synchronous; thread-safe (one grpc channel shared by every call)."""

    def __init__(
        self,
        target: str,
        service: str,
        *,
        full_feature_names: bool = True,
        client: FeatureClient | None = None,
        **options: Any,
    ) -> None:
        """options: token, timeout_s (deadline per call), retries, tls (see serving_api.client)."""
        self.target = target
        self.service = service
        self.full_feature_names = full_feature_names
        self._own = client is None
        self._client = client or FeatureClient(target, **options)

    def __enter__(self) -> TensorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own:
            self._client.close()

    def layout(self, timeout_s: float | None = None) -> ServerLayout:
        message = self._client.describe(
            self.service, full_feature_names=self.full_feature_names, timeout_s=timeout_s
        )
        return layout_from_message(self.service, message)

    def expect(self, columns: Sequence[str], timeout_s: float | None = None) -> ServerLayout:
        """The server's layout, if its tensor columns are `columns` in this order."""
        layout = self.layout(timeout_s)
        layout.expect(columns, self.target)
        return layout

    def fetch(self, entities: Entities, timeout_s: float | None = None) -> FeatureTensor:
        """Features of the entity rows (join keys and request fields, equal lengths)."""
        return self._client.get_tensor(
            self.service, entities, full_feature_names=self.full_feature_names, timeout_s=timeout_s
        )

    def fetch_torch(
        self, entities: Entities, device: str = "cpu", timeout_s: float | None = None
    ) -> tuple[Any, Any]:
        return tensor_to_torch(self.fetch(entities, timeout_s), device)


class _ConnectionClient(AsyncFeatureClient):
    """An AsyncFeatureClient on a TCP connection of its own.

    gRPC puts channels created with equal arguments on one shared connection (measured:
    3 channels, 1 connection), and `featureline serve --workers N` spreads connections,
    not calls, over its N processes (SO_REUSEPORT): one connection keeps one server
    process busy however many calls are in flight. A distinct channel argument per
    connection gives each its own socket."""

    def __init__(self, target: str, index: int, **options: Any) -> None:
        super().__init__(target, **options)
        self._shared = self._channel  # never connected: channels connect on first call
        self._channel = open_channel(target, self.tls, aio=True, extra=[("featureline.connection", index)])
        self._tensor = self._method(self._channel, "GetOnlineTensor", pb.Tensor)
        self._describe = self._method(self._channel, "DescribeFeatures", pb.FeatureLayout)
        self._online = self._method(self._channel, "GetOnlineFeatures", pb.GetOnlineFeaturesResponse)

    async def close(self) -> None:
        await self._shared.close()
        await super().close()


class AsyncTensorClient:
    """asyncio: `async with AsyncTensorClient(target, service) as client: ...`.

    `connections`: TCP connections to spread calls over (default 1); each call goes to
    the connection with the fewest calls in flight (ties: round robin). The kernel
    assigns connections to `featureline serve` worker processes by a hash, so some
    processes get two connections and some none; a connection on a busy process holds
    its calls longer and so gets fewer new ones (least outstanding requests, as load
    balancers do). Use about two per worker process when several calls are in flight:
    16 connections over 12 processes reach ~9 of them, 24 reach ~10.5.
    """

    def __init__(
        self,
        target: str,
        service: str,
        *,
        full_feature_names: bool = True,
        client: AsyncFeatureClient | None = None,
        connections: int = 1,
        **options: Any,
    ) -> None:
        if connections < 1:
            raise BadInputError(f"connections must be >= 1, got {connections}")
        self.target = target
        self.service = service
        self.full_feature_names = full_feature_names
        self._own = client is None
        if client is not None:
            self._clients: list[AsyncFeatureClient] = [client]
        elif connections == 1:
            self._clients = [AsyncFeatureClient(target, **options)]
        else:
            self._clients = [_ConnectionClient(target, i, **options) for i in range(connections)]
        self._client = self._clients[0]
        self._next = 0
        self._in_flight = [0] * len(self._clients)

    async def __aenter__(self) -> AsyncTensorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own:
            for client in self._clients:
                await client.close()

    def _pick(self) -> int:
        """The index of the connection with the fewest calls in flight, scanning from
        the one after the last pick so that ties rotate."""
        counts = self._in_flight
        n = len(counts)
        start = self._next + 1
        best = start % n
        for offset in range(1, n):
            i = (start + offset) % n
            if counts[i] < counts[best]:
                best = i
        self._next = best
        return best

    async def layout(self, timeout_s: float | None = None) -> ServerLayout:
        message = await self._client.describe(
            self.service, full_feature_names=self.full_feature_names, timeout_s=timeout_s
        )
        return layout_from_message(self.service, message)

    async def expect(self, columns: Sequence[str], timeout_s: float | None = None) -> ServerLayout:
        layout = await self.layout(timeout_s)
        layout.expect(columns, self.target)
        return layout

    async def fetch(self, entities: Entities, timeout_s: float | None = None) -> FeatureTensor:
        i = self._pick()
        self._in_flight[i] += 1
        try:
            return await self._clients[i].get_tensor(
                self.service, entities, full_feature_names=self.full_feature_names, timeout_s=timeout_s
            )
        finally:
            self._in_flight[i] -= 1

    async def fetch_torch(
        self, entities: Entities, device: str = "cpu", timeout_s: float | None = None
    ) -> tuple[Any, Any]:
        return tensor_to_torch(await self.fetch(entities, timeout_s), device)
