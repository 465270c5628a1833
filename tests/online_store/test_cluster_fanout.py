"""A cluster round's pure parts (featureline.online_store.redis.cluster_fanout): commands
ordered by node and put back, and the fan-out's failure paths (a node that stays
silent past the timeout: given up, its connection kept; a lost connection), with node
clients that answer in memory.
The same paths against a real cluster: tests/online_store/test_redis_cluster_reader.py."""

from __future__ import annotations

import asyncio
import gc
import random
from typing import Any

import pytest

from featureline.online_store import StoreUnavailableError
from featureline.online_store.redis.aio_connection import Expired
from featureline.online_store.redis.cluster_fanout import (
    ClusterTimeoutError,
    ClusterUnavailableError,
    order_by_node,
    send_all,
)


class _Node:
    """Answers each payload with its own replies after `delay_s` (None: never), or
    loses its connection (`lose`). Not connected until the first execute_packed."""

    def __init__(self, address: str, delay_s: float | None = 0.0, *, connected: bool = True) -> None:
        self.address = address
        self.delay_s = delay_s
        self.connected = connected
        self.lose = False
        self.closed = 0
        self.expired: list[int] = []
        self.sent: list[bytes] = []

    def _answer(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.sent.append(payload)
        replies = [payload.split(b",")[i] for i in range(expected)]
        if self.lose:
            loop.call_soon(future.set_exception, StoreUnavailableError(f"lost {self.address}"))
        elif self.delay_s is not None:
            loop.call_later(self.delay_s, lambda: future.done() or future.set_result(replies))
        return future

    async def execute_packed(
        self, payload: bytes, expected: int, timeout_s: float | None = None, *, raw: bool = False
    ) -> list[Any]:
        self.connected = True
        return await asyncio.wait_for(self._answer(payload, expected), timeout_s)

    def submit(self, payload: bytes, expected: int) -> asyncio.Future[list[Any]] | None:
        return self._answer(payload, expected) if self.connected else None

    def expire(self, future: asyncio.Future[list[Any]], expected: int) -> None:
        if not future.done():
            future.set_exception(Expired())
            self.expired.append(expected)

    async def ping(self, timeout_s: float = 0.5) -> bool:
        return True

    def close(self) -> None:
        self.closed += 1


def test_commands_are_ordered_by_node_stably_and_put_back() -> None:
    rng = random.Random(3)
    nodes = [_Node(f"n{i}") for i in range(4)]
    for n in (2, 7, 300):
        owners = [rng.choice((0, 2, 3)) for _ in range(n)]  # node 1 gets nothing
        routes = order_by_node(owners, nodes, [b"k"] * n)
        assert [c.address for c, _ in routes.groups] == [f"n{k}" for k in sorted(set(owners))]
        assert [count for _, count in routes.groups] == [owners.count(k) for k in sorted(set(owners))]
        # Stable: node by node, each node's commands in command order.
        assert routes.order == sorted(range(n), key=lambda i: (owners[i], i))
        node_order = [f"r{i}" for i in routes.order]
        assert [node_order[j] for j in routes.inverse] == [f"r{i}" for i in range(n)]


def test_one_node_takes_all_without_reordering_and_a_slot_without_node_is_named() -> None:
    nodes = [_Node("a"), _Node("b")]
    routes = order_by_node([1, 1, 1], nodes, [b"x"] * 3)
    assert [(c.address, k) for c, k in routes.groups] == [("b", 3)]
    assert routes.order == routes.inverse == []
    for owners in ([-1, -1], [0, -1, 1]):
        keys = [b"key-%d" % i for i in range(len(owners))]
        with pytest.raises(ClusterUnavailableError, match=repr(keys[owners.index(-1)])):
            order_by_node(owners, nodes, keys)


def _sends(nodes: list[_Node]) -> list[tuple[Any, bytes, int]]:
    return [(node, f"{node.address}-0,{node.address}-1".encode(), 2) for node in nodes]


def test_every_node_gets_its_payload_and_replies_come_back_in_node_order() -> None:
    nodes = [_Node("a", 0.02), _Node("b"), _Node("c", 0.01, connected=False)]
    failed: list[int] = []
    got = asyncio.run(send_all(_sends(nodes), 1.0, lambda: failed.append(1)))
    assert got == [[b"a-0", b"a-1"], [b"b-0", b"b-1"], [b"c-0", b"c-1"]]
    assert [len(n.sent) for n in nodes] == [1, 1, 1] and not failed


def test_a_silent_node_times_out_keeps_its_connection_and_counts_as_failed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nodes = [_Node("a"), _Node("b", None), _Node("c", None)]
    failed: list[int] = []

    async def run() -> None:
        with pytest.raises(ClusterTimeoutError, match="node b did not answer within 0.050 s"):
            await send_all(_sends(nodes), 0.05, lambda: failed.append(1))
        await asyncio.sleep(0.01)  # the others' exceptions are retrieved, not logged

    asyncio.run(run())
    gc.collect()  # an unretrieved exception is logged when its future is collected
    assert "never retrieved" not in caplog.text
    # Each silent node's replies are given up (dropped when they come), its connection
    # is not closed: other requests on it go on.
    assert [n.expired for n in nodes] == [[], [2], [2]]
    assert [n.closed for n in nodes] == [0, 0, 0]
    assert failed == [1]


def test_a_lost_connection_fails_the_round_and_counts_as_failed() -> None:
    nodes = [_Node("a"), _Node("b")]
    nodes[1].lose = True
    failed: list[int] = []
    with pytest.raises(StoreUnavailableError, match="lost b"):
        asyncio.run(send_all(_sends(nodes), None, lambda: failed.append(1)))
    assert failed == [1]
