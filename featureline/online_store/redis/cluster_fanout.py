"""One round of the cluster reader (cluster_aio.py): commands ordered by node, one
payload per primary sent to every primary at once, replies put back in command order.

Pure routing (`order_by_node`) and the sending (`send_one`, `send_all`) live here, the
slot map, redirections and refreshes in cluster_aio. What a round costs the client per
command is measured by `featureline bench cluster_routing` (benchmarks/cluster_routing).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from featureline.errors import ServiceUnavailableError
from featureline.online_store.base import StoreReplyError, StoreTimeoutError, StoreUnavailableError
from featureline.online_store.redis.aio_connection import Expired


class ClusterUnavailableError(StoreUnavailableError):
    """The cluster cannot answer this request now (a node down, slots in flux)."""


class ClusterTimeoutError(ClusterUnavailableError, StoreTimeoutError):
    """The request's time budget ran out (a node's reply, or between redirections)."""


class ClusterReplyError(StoreReplyError):
    """A node answered a command with an error of its own (e.g. WRONGTYPE)."""


class NodeClient(Protocol):
    """What the reader needs of one node's client (RedisClient has it)."""

    address: str

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None, *, raw: bool = False
    ) -> list[Any]: ...

    def submit(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]] | None: ...

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        """Give up on a submit()ted future: it fails with aio_connection.Expired."""

    async def ping(self, timeout_s: float = 0.5) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Routes:
    """One round's routing: `groups` (client, command count) in node order; `order`
    the command positions sorted by node (stable: each node's commands in command
    order) and `inverse` where command i sits in that order; both empty when one node
    takes every command."""

    groups: list[tuple[NodeClient, int]]
    order: list[int]
    inverse: list[int]


def order_by_node(owners: list[int], nodes: Sequence[NodeClient], keys: Sequence[bytes]) -> Routes:
    """Routes of commands whose key's node number (index into `nodes`, -1: no node
    serves its slot) is owners[i]; keys only name a key without a node in the error."""
    n = len(owners)
    if n and owners.count(owners[0]) == n and owners[0] >= 0:
        # One node takes all (batch 1, or keys sharing a hash tag): no reordering.
        return Routes([(nodes[owners[0]], n)], [], [])
    numbers = np.array(owners, dtype=np.intp)
    if n and numbers.min() < 0:
        key = keys[owners.index(-1)]
        raise ClusterUnavailableError(f"Redis Cluster: no node serves the slot of key {key[:60]!r}")
    # numpy's stable argsort, bincount and inverse permutation: a few ns per command
    # plus ~1 us a call each; sorted(range(n), key=...) costs ~100 ns per command.
    order = np.argsort(numbers, kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(n)
    counts = np.bincount(numbers, minlength=len(nodes)).tolist()
    groups = [(client, count) for client, count in zip(nodes, counts, strict=False) if count]
    return Routes(groups, order.tolist(), inverse.tolist())


def _expire(pending: Sequence[tuple[NodeClient, asyncio.Future[Any], int]]) -> None:
    """The round's timer: every node still silent fails this request. Its connection
    stays open for the other requests (its late replies are dropped), as RedisClient's
    own timeouts do; a node that is stuck is closed by its client's stall watchdog."""
    for client, future, count in pending:
        client.expire(future, count)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


async def send_one(
    client: NodeClient, payload: bytes, expected: int, timeout: float | None, failed: Callable[[], None]
) -> list[Any]:
    """One node's raw replies; `failed` is called when the node cannot answer."""
    try:
        return await client.execute_packed(payload, expected, timeout, raw=True)
    except ServiceUnavailableError:
        failed()
        raise


async def send_all(
    sends: Sequence[tuple[NodeClient, bytes, int]], timeout: float | None, failed: Callable[[], None]
) -> list[list[Any]]:
    """Each node's payload at once, then each node's raw replies. A connected client's
    submit() gives its reply future directly: asyncio.gather of 3 coroutines costs a
    task each, ~60 us a request on a loaded 2-core machine against ~9 us for 3 futures
    (a task per node would cost more than the routing). A client that must connect
    first gets a task of execute_packed, with the timeout its own."""
    futures: list[asyncio.Future[list[Any]]] = []
    timed: list[tuple[NodeClient, asyncio.Future[list[Any]], int]] = []
    for client, payload, count in sends:
        future = client.submit(payload, count)
        if future is None:
            future = asyncio.ensure_future(client.execute_packed(payload, count, timeout, raw=True))
        else:
            timed.append((client, future, count))
        futures.append(future)
    timer = None
    if timeout is not None and timed:
        timer = asyncio.get_running_loop().call_later(timeout, _expire, timed)
    try:
        got = []
        for (client, _, _), future in zip(sends, futures, strict=True):
            try:
                got.append(await future)
            except Expired:
                raise ClusterTimeoutError(
                    f"Redis Cluster node {client.address} did not answer within {timeout or 0:.3f} s"
                ) from None
        return got
    except BaseException as exc:
        if isinstance(exc, ServiceUnavailableError):
            failed()
        for future in futures:  # no "exception was never retrieved" from the others
            future.add_done_callback(_retrieve)
        raise
    finally:
        if timer is not None:
            timer.cancel()


__all__ = [
    "ClusterReplyError",
    "ClusterTimeoutError",
    "ClusterUnavailableError",
    "NodeClient",
    "Routes",
    "order_by_node",
    "send_all",
    "send_one",
]
