"""Routing of batch materialize's packed writes (online_store.redis.pipe): hash slots of
a whole key column equal redis-py's key_slot, and a cluster route gives each script call
the keys of one slot, each node's calls together, batches taking turns across nodes."""

from __future__ import annotations

import random
from typing import Any

import hiredis
import numpy as np
import pytest

from featureline.batch.materialize.latest import _batches, _interleaved
from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online_store.redis.cluster import SLOTS, key_slot
from featureline.online_store.redis.pipe import PackedPipes, key_slots


def _column(keys: list[bytes], lead: bytes = b"") -> tuple[np.ndarray, np.ndarray]:
    """uint8 bytes and int64 offsets of `keys`, after `lead` (a sliced Arrow array's
    offsets do not start at 0)."""
    data = np.frombuffer(lead + b"".join(keys), dtype=np.uint8)
    offsets = np.cumsum([len(lead), *map(len, keys)], dtype=np.int64)
    return data, offsets


def _random_key(rng: random.Random, length: int) -> bytes:
    alphabet = b"ab{}:\x00\xff" + bytes(range(48, 58))
    return bytes(rng.choice(alphabet) for _ in range(length))


@pytest.mark.parametrize("lengths", [[37], [0, 1, 2, 3, 16, 17, 60]])
def test_key_slots_equal_redis_key_slot(lengths: list[int]) -> None:
    """Equal lengths (one view, the fast path) and mixed ones; odd and even lengths;
    hash tags, empty tags "{}", braces without a closing one."""
    rng = random.Random(4)
    keys = [_random_key(rng, rng.choice(lengths)) for _ in range(3_000)]
    if len(lengths) == 1:  # hand-made tags, padded to the one length
        keys += [
            k.ljust(lengths[0], b"z")
            for k in (b"{user}:1", b"x{user}:2", b"{}{user}", b"{{a}}", b"a{b", b"}{")
        ]
    for lead in (b"", b"skipped"):
        got = key_slots(*_column(keys, lead)).tolist()
        assert got == [key_slot(k) for k in keys]
    assert key_slots(*_column([])).tolist() == []


def test_a_cluster_route_gives_each_call_one_slot() -> None:
    rng = np.random.default_rng(2)
    owners = np.repeat(np.arange(3, dtype=np.int32), [5461, 5461, 5462])
    owners[100:200] = 2  # a node may own several ranges
    pipes = PackedPipes([RedisConfig(port=p) for p in (1, 2, 3)], owners)
    slots = np.concatenate([rng.integers(0, SLOTS, 20_000), np.full(1_234, 150)]).astype(np.int32)
    route = pipes.route(len(slots), lambda: slots, 500)
    assert route.order is not None and sorted(route.order.tolist()) == list(range(len(slots)))
    ordered = slots[route.order]
    covered = 0
    for node, lo, hi in route.calls:
        assert lo == covered and 0 < hi - lo <= 500
        assert len(set(ordered[lo:hi].tolist())) == 1 and owners[ordered[lo]] == node
        covered = hi
    assert covered == len(slots)
    nodes = [node for node, _, _ in route.calls]
    assert nodes == sorted(nodes)  # each node's calls together
    crowded = [hi - lo for _, lo, hi in route.calls if ordered[lo] == 150]  # > 500 keys: split
    assert sum(crowded) == int((slots == 150).sum()) and len(crowded) == -(-sum(crowded) // 500)


def test_one_node_routes_in_order_and_batches_interleave() -> None:
    single = PackedPipes([RedisConfig()])
    assert single.route(1_001, lambda: pytest.fail("one node needs no slots"), 500).calls == [
        (0, 0, 500), (0, 500, 1_000), (0, 1_000, 1_001),
    ]  # fmt: skip
    calls = [(0, 0, 300), (0, 300, 600), (0, 600, 700), (1, 700, 800), (2, 800, 900), (2, 900, 1_300)]
    batches = list(_batches(calls, 500))
    assert [(n, lo, hi) for n, lo, hi, _ in batches] == [
        (0, 0, 600),
        (0, 600, 700),
        (1, 700, 800),
        (2, 800, 1_300),
    ]
    assert batches[0][3] == [(0, 300), (300, 600)]
    assert [b[0] for b in _interleaved(iter(batches))] == [0, 1, 2, 0]


def test_a_stale_route_fails_with_a_clear_error(redis_cluster: Any) -> None:
    """Raw sockets do not follow MOVED: a route older than the slot map fails the write
    with a message that says so (materialize is then rerun), never silently."""
    from featureline.online_store import open_store
    from featureline.online_store.redis.cluster import node_config

    store = open_store(redis_cluster.config())
    first = redis_cluster.primaries()[0]
    stale = PackedPipes([node_config(store.config, "127.0.0.1", first)], np.zeros(SLOTS, dtype=np.int32))
    try:
        stale.send(0, b"".join(hiredis.pack_command(("SET", b"k:%d" % i, b"1")) for i in range(50)), 50)
        with pytest.raises(ServiceUnavailableError, match="slots moved during the write; run it again"):
            stale.finish()
    finally:
        stale.close()
        store.close()
