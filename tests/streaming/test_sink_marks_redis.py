"""The per-key marks against real Redis: the compare-and-set script (TILE_APPLY_LUA), a
kill between key writes (simulated: the store writes a prefix of a batch's keys, then
fails) and a replay, and the layout Feast's readers see."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import redis
from test_sink_exactly_once import EVENTS, PARTITION, _apply, _oracle, _sink, _tiles

from featureline.online.tiles import TILE_PREFIX, decode_tile, offsets_key
from featureline.online_store import MARK_PREFIX, StoreUnavailableError, TileWrite, mark_field
from featureline.online_store.redis.store import RedisStore


class _KilledAfter(RedisStore):
    """Writes the first `keys` tile hashes of the next apply, then fails: a process
    killed between two key writes (on a cluster: between two slots' scripts)."""

    def __init__(self, client: Any, keys: int) -> None:
        super().__init__(client)
        self.keys = keys

    def apply_tiles(
        self, writes: Sequence[TileWrite], mark: bytes, new_mark: int, now_ms: int
    ) -> list[bytes]:
        super().apply_tiles(writes[: self.keys], mark, new_mark, now_ms)
        raise StoreUnavailableError(f"killed after {self.keys} tile hashes")


def _redis_tiles(client: redis.Redis) -> dict[bytes, dict[bytes, Any]]:
    out = {}
    for key in client.scan_iter(match=TILE_PREFIX + b"*"):
        fields = client.hgetall(key)
        out[key] = {f: decode_tile(v) for f, v in fields.items() if not f.startswith(MARK_PREFIX)}
    return out


def test_the_script_writes_only_keys_whose_mark_is_as_expected(redis_client: redis.Redis) -> None:
    store = RedisStore(redis_client)
    mark = mark_field("tx", 3)
    redis_client.hset(b"fl:tile:k2", mark, b"7")
    writes = [
        TileWrite(b"fl:tile:k1", -1, [(b"100:3", b"{}")]),
        TileWrite(b"fl:tile:k2", 5, [(b"100:3", b"{}")]),  # stored 7: another writer
        TileWrite(b"fl:tile:k3", -1, [(b"100:3", b"{}")], prune_before_s=50),
    ]
    assert store.apply_tiles(writes, mark, 12, 0) == [b"fl:tile:k2"]
    assert redis_client.hgetall(b"fl:tile:k1") == {b"100:3": b"{}", mark: b"12"}
    assert redis_client.hgetall(b"fl:tile:k2") == {mark: b"7"}  # untouched
    assert redis_client.hgetall(b"fl:tile:k3") == {b"100:3": b"{}", mark: b"12"}  # marks never pruned
    reads = [(b"fl:tile:k1", b"100:3"), (b"fl:tile:k1", b"9:3")]
    values, marks = store.read_tiles(reads, [b"fl:tile:k1", b"x"], mark)
    assert (values, marks) == ([b"{}", None], [12, -1])


@pytest.mark.parametrize("written", [1, 6])
def test_a_kill_between_key_writes_then_a_replay_counts_each_event_once(
    redis_client: redis.Redis, written: int
) -> None:
    _apply(_sink(RedisStore(redis_client)), 0, 20)
    with pytest.raises(StoreUnavailableError):
        _apply(_sink(_KilledAfter(redis_client, written)), 20, 45)
    assert int(redis_client.get(offsets_key("p", "tx", PARTITION)) or -1) == 19
    restarted = _sink(RedisStore(redis_client))
    for lo, hi in ((5, 33), (33, EVENTS)):
        _apply(restarted, lo, hi)
    assert _redis_tiles(redis_client) == _tiles(_oracle(EVENTS))
    assert int(redis_client.get(offsets_key("p", "tx", PARTITION)) or -1) == EVENTS - 1


def test_marks_are_only_in_tile_hashes_never_in_feast_format_keys(redis_client: redis.Redis) -> None:
    _apply(_sink(RedisStore(redis_client)), 0, EVENTS)
    memory = _oracle(EVENTS)
    latest = [k for k in redis_client.scan_iter() if not k.startswith((TILE_PREFIX, b"fl:offset:"))]
    assert sorted(latest) == sorted(k for k in memory.hashes if not k.startswith(TILE_PREFIX))
    for key in latest:
        assert not any(f.startswith(MARK_PREFIX) for f in redis_client.hkeys(key)), key
