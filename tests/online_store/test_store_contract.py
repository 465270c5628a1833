"""The writers' seam (online_store.base.OnlineStore): the same cases on every adapter,
each against a real server: RedisStore (the session's single Redis), ClusterStore (the
session's 3-primary cluster), SentinelStore (a Sentinel-managed primary with a replica)
and, where its answers are defined, the in-memory store of unit tests.

Values are compared decoded (the memory store keeps its order field in its own form);
what Feast reads is byte-for-byte the single node's (tests/batch, tests/feast_template).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from redis_sentinel_helpers import sentinel_setup_fixture  # noqa: F401  (module-scoped fixture)

from featureline.config import RedisConfig
from featureline.errors import ServiceUnavailableError
from featureline.online.feast_format import decode_value, encode_timestamp, encode_value, feature_field
from featureline.online_store import (
    NO_MARK,
    LatestRow,
    OnlineStore,
    TileSet,
    TileWrite,
    mark_field,
    open_store,
)
from featureline.online_store.memory import MemoryStore
from featureline.online_store.redis.scripts import LATEST_LWW_LUA
from featureline.repo import load_repo
from featureline.settings import Settings
from featureline.specs import ViewSpec

REPO = Path(__file__).resolve().parents[2] / "feature_repo"
REDIS = ["single", "cluster", "sentinel"]
ALL = [*REDIS, "memory"]
AGE = "account_age_days"
T = 1_700_000_000_000_000  # an event time (us)


@dataclass
class Backend:
    """A store under test and a plain view of what it holds (redis-py, or the dicts)."""

    name: str
    open: Callable[..., OnlineStore]  # (**config overrides) -> a fresh store
    raw: Any  # redis-py client of the data (a RedisCluster on the cluster); None: memory
    primaries: list[redis.Redis]  # one client per primary (WAIT counters, SCRIPT FLUSH)

    def hgetall(self, store: OnlineStore, key: bytes) -> dict[bytes, bytes]:
        if isinstance(store, MemoryStore):
            return dict(store.hashes.get(key, {}))
        return dict(self.raw.hgetall(key))

    def expires_in_ms(self, store: OnlineStore, key: bytes) -> int:
        if isinstance(store, MemoryStore):
            return store.expire_at_ms.get(key, 0) - int(time.time() * 1000)
        return int(self.raw.pttl(key))


@pytest.fixture(scope="module")
def view() -> ViewSpec:
    spec = load_repo(Settings(repo=REPO, home=Path("/nonexistent")), use_cache=False)
    return spec.view("user_profile")


def _flush(clients: list[redis.Redis]) -> None:
    for client in clients:
        client.flushall()


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A backend with no keys. The services start only for the params that use them."""
    name = request.param
    if name == "memory":
        memory = MemoryStore()
        yield Backend(name, lambda **_: memory, None, [])
        return
    if name == "single":
        stack: Settings = request.getfixturevalue("stack")
        cfg = RedisConfig(host=stack.redis_host, port=stack.redis_port)
        raw = redis.Redis(host=cfg.host, port=cfg.port)
        primaries = [raw]
    elif name == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        cfg = cluster.config()
        raw = cluster.client()
        primaries = [cluster.node_client(p) for p in cluster.primaries()]
    else:
        setup = request.getfixturevalue("sentinel_setup")
        cfg = setup.redis_config()
        raw = setup.data_client(setup.primary)
        primaries = [raw]
    _flush(primaries)
    opened: list[OnlineStore] = []

    def make(**overrides: Any) -> OnlineStore:
        opened.append(open_store(dataclasses.replace(cfg, **overrides)))
        return opened[-1]

    try:
        yield Backend(name, make, raw, primaries)
    finally:
        for store in opened:
            store.close()
        for client in {id(c): c for c in [raw, *primaries]}.values():
            client.close()


def _row(key: bytes, event_us: int, created_us: int | None, age: int) -> LatestRow:
    return LatestRow(key, event_us, created_us, {AGE: age, "home_country": "FR", "credit_limit": 1.5})


def _age(backend: Backend, store: OnlineStore, view: ViewSpec, key: bytes) -> Any:
    raw = backend.hgetall(store, key).get(feature_field(view.name, AGE))
    return None if raw is None else decode_value(raw)


def _keys(n: int, prefix: bytes = b"k") -> list[bytes]:
    """Keys spread over hash slots (so over every primary of a cluster)."""
    return [b"%s:%d" % (prefix, i) for i in range(n)]


def test_lww_keeps_the_newest_row_and_rewrites_an_equal_one(backend: Backend, view: ViewSpec) -> None:
    store = backend.open()
    keys = _keys(120)
    assert store.write_latest(view, [_row(k, T, T, 1) for k in keys]) == 120
    older = [_row(k, T - 1, T + 5, 2) for k in keys[:60]]  # older event time: created time irrelevant
    newer = [_row(k, T + 1, None, 3) for k in keys[60:90]]
    equal = [_row(k, T, T, 4) for k in keys[90:]]  # same (event, created): written again
    assert store.write_latest(view, older + newer + equal) == 60
    ages = [_age(backend, store, view, k) for k in keys]
    assert ages == [1] * 60 + [3] * 30 + [4] * 30
    # Same event time, the created time decides; a missing one loses to any.
    assert store.write_latest(view, [_row(keys[0], T, None, 5), _row(keys[1], T, T + 1, 6)]) == 1
    assert [_age(backend, store, view, k) for k in keys[:2]] == [1, 6]


@pytest.mark.parametrize("backend", REDIS, indirect=True)  # Feast rows, scripts, replicas
def test_lww_against_a_row_feast_wrote(backend: Backend, view: ViewSpec) -> None:
    """Feast writes the features and `_ts:{view}` only: its event time is the order."""
    store = backend.open()
    age_field = feature_field(view.name, AGE)
    feast_keys = _keys(40, b"feast")
    for key in feast_keys:
        backend.raw.hset(
            key, mapping={age_field: encode_value("int64", 7), f"_ts:{view.name}": encode_timestamp(T)}
        )
    rows = [_row(k, T - 1, None, 8) for k in feast_keys[:20]] + [
        _row(k, T + 1, None, 9) for k in feast_keys[20:]
    ]
    assert store.write_latest(view, rows) == 20
    assert [_age(backend, store, view, k) for k in feast_keys] == [7] * 20 + [9] * 20


def test_apply_tiles_is_a_compare_and_set_per_key(backend: Backend) -> None:
    store = backend.open()
    mark = mark_field("tx", 3)
    keys = _keys(30, b"fl:tile")
    # 450 keys of one hash tag: more than TILE_CHUNK_KEYS (400), still one script call.
    same_slot = [b"fl:tile:{one}:%d" % i for i in range(450)]
    first = [TileWrite(k, NO_MARK, [(b"100:3", b"a")], expire_at_ms=0) for k in keys + same_slot]
    assert store.apply_tiles(first, mark, 10, 0) == []
    # Another writer moved the marks of keys[:5]: exactly those are reported, untouched.
    again = [TileWrite(k, NO_MARK, [(b"100:3", b"z")]) for k in keys[:5]]
    assert sorted(store.apply_tiles(again, mark, 11, 0)) == sorted(keys[:5])
    second = [TileWrite(k, 10, [(b"200:3", b"b")], prune_before_s=150) for k in keys[:10]]
    second += [TileWrite(k, 9, [(b"200:3", b"c")]) for k in keys[10:]]  # stale expectation
    conflicts = store.apply_tiles(second, mark, 12, 0)
    assert sorted(conflicts) == sorted(keys[10:])
    assert backend.hgetall(store, keys[0]) == {b"200:3": b"b", mark: b"12"}  # 100:3 pruned, mark kept
    assert backend.hgetall(store, keys[10]) == {b"100:3": b"a", mark: b"10"}
    assert backend.hgetall(store, same_slot[449]) == {b"100:3": b"a", mark: b"10"}
    values, marks = store.read_tiles(
        [(keys[0], b"200:3"), (keys[0], b"100:3"), (keys[10], b"100:3")],
        [keys[0], keys[10], b"fl:tile:none"],
        mark,
    )
    assert (values, marks) == ([b"b", None, b"a"], [12, 10, NO_MARK])
    assert store.read_tiles([], [], mark) == ([], [])


def test_tile_expiry_moves_forward_only(backend: Backend) -> None:
    store = backend.open()
    now = int(time.time() * 1000)
    key, rebuilt = b"fl:tile:exp", b"fl:tile:set"
    mark = mark_field("tx", 0)
    assert (
        store.apply_tiles(
            [TileWrite(key, NO_MARK, [(b"1:0", b"a")], expire_at_ms=now + 100_000)], mark, 1, now
        )
        == []
    )
    assert (
        store.apply_tiles([TileWrite(key, 1, [(b"2:0", b"b")], expire_at_ms=now + 50_000)], mark, 2, now)
        == []
    )
    assert 90_000 < backend.expires_in_ms(store, key) <= 100_000
    assert store.set_tiles([TileSet(rebuilt, now + 100_000, [(b"1:0", b"a"), (b"2:0", b"b")])]) == 2
    assert store.set_tiles([TileSet(rebuilt, now + 50_000, [(b"1:0", b"c")])]) == 1  # whole value, set
    assert backend.hgetall(store, rebuilt) == {b"1:0": b"c", b"2:0": b"b"}
    assert 90_000 < backend.expires_in_ms(store, rebuilt) <= 100_000
    assert store.set_tiles([TileSet(rebuilt, now + 200_000, [(b"3:0", b"d")])]) == 1
    assert 190_000 < backend.expires_in_ms(store, rebuilt) <= 200_000
    many = [TileSet(k, now + 100_000, [(b"1:0", b"x")]) for k in _keys(2_500, b"fl:tile:many")]
    assert store.set_tiles(many) == 2_500  # more than one pipeline round trip
    assert backend.hgetall(store, many[-1].key) == {b"1:0": b"x"}


def test_watermarks_never_move_back(backend: Backend) -> None:
    store = backend.open()
    assert store.get_watermark("fl:wm:a") is None
    assert store.raise_watermark("fl:wm:a", 10) is True
    assert store.raise_watermark(b"fl:wm:a", 5) is False
    assert store.raise_watermark("fl:wm:a", 10) is False
    assert store.get_watermark(b"fl:wm:a") == 10
    assert store.raise_watermark("fl:wm:a", 11) is True and store.get_watermark("fl:wm:a") == 11


@pytest.mark.parametrize("backend", REDIS, indirect=True)  # Feast rows, scripts, replicas
def test_scripts_survive_a_flushed_script_cache(backend: Backend, view: ViewSpec) -> None:
    """A primary without the scripts (a promoted replica, SCRIPT FLUSH): every write
    still runs once (NOSCRIPT reloads and resends), nothing twice."""
    store = backend.open()
    keys = _keys(50, b"fl:tile:ns")
    mark = mark_field("tx", 1)
    assert store.apply_tiles([TileWrite(k, NO_MARK, [(b"1:0", b"a")]) for k in keys], mark, 1, 0) == []
    for client in backend.primaries:
        client.script_flush()
    assert store.apply_tiles([TileWrite(k, 1, [(b"1:0", b"b")]) for k in keys], mark, 2, 0) == []
    assert all(backend.raw.hget(k, mark) == b"2" for k in keys)
    for client in backend.primaries:
        client.script_flush()
    assert store.write_latest(view, [_row(k, T, None, 1) for k in _keys(50)]) == 50
    for client in backend.primaries:
        client.script_flush()
    assert store.raise_watermark("fl:wm:ns", 3) is True
    for client in backend.primaries:
        client.script_flush()
    sha = store.load_script(LATEST_LWW_LUA)  # type: ignore[attr-defined]  # batch materialize's raw EVALSHA
    assert all(client.script_exists(sha.decode()) == [True] for client in backend.primaries)


def _waits(clients: list[redis.Redis]) -> list[int]:
    return [int(c.info("commandstats").get("cmdstat_wait", {}).get("calls", 0)) for c in clients]


@pytest.mark.parametrize("backend", REDIS, indirect=True)  # Feast rows, scripts, replicas
def test_after_write_waits_on_every_primary(backend: Backend) -> None:
    """FEATURELINE_REDIS_WAIT_REPLICAS=1: one WAIT per primary per call (a cluster: on
    each of its primaries, each with its own marker); 0: no round trip at all."""
    if backend.name == "single":
        store = backend.open(wait_replicas=1, wait_timeout_ms=100)
        with pytest.raises(ServiceUnavailableError, match="only 0 of 1 replica"):
            store.after_write()  # no replica: the writes are not safe, said so
        return
    before = _waits(backend.primaries)
    backend.open().after_write()
    assert _waits(backend.primaries) == before
    backend.open(wait_replicas=1).after_write()
    assert _waits(backend.primaries) == [n + 1 for n in before]
    store = backend.open(wait_replicas=2, wait_timeout_ms=100)  # one replica each
    with pytest.raises(ServiceUnavailableError, match="only 1 of 2 replica"):
        store.after_write()


def test_ping(backend: Backend) -> None:
    assert backend.open().ping() is True
