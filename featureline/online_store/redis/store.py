"""The sync Redis adapter of the seam (online_store.base.OnlineStore), over redis-py.

One node: calls of many keys go out as one pipeline of script calls, `CHUNK_KEYS` keys
per call. The cluster branch overrides `_chunks` (keys of one hash slot per call) and
the client; the scripts (online_store.redis.scripts) are the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import redis

from featureline.config import RedisConfig
from featureline.online.feast_format import (
    encode_timestamp,
    encode_value,
    feature_field,
    order_field,
    order_value,
    ts_field,
)
from featureline.online_store.base import NO_MARK, LatestRow, StoreUnavailableError, TileSet, TileWrite
from featureline.online_store.redis.connect import check_redis, config_of
from featureline.online_store.redis.durability import wait_if_configured
from featureline.online_store.redis.pipe import PackedPipes
from featureline.online_store.redis.scripts import LATEST_LWW_LUA, RAISE_LUA, TILE_APPLY_LUA, TILE_SET_LUA
from featureline.online_store.redis.sentinel import discover_primary, primary_config, sentinel_client
from featureline.specs import ViewSpec

# Keys per LWW script call: bounds one call's Redis time to ~1 ms, so a big write never
# blocks readers for long (Redis runs scripts one at a time).
CHUNK_KEYS = 500
# Tile hashes per compare-and-set call: ~1 ms of Redis time, so readers are never
# blocked for long (Redis runs scripts one at a time).
TILE_CHUNK_KEYS = 400
# Tile hashes per pipeline round trip of rebuilt tiles (each HSET carries all of one
# key's tiles).
_PIPELINE_KEYS = 2000
# One script call: its KEYS and ARGV.
ScriptCall = tuple[Sequence[bytes], Sequence[Any]]


def lww_arguments(view: ViewSpec, rows: Sequence[LatestRow], key_ttl_s: int) -> tuple[list[bytes], list[Any]]:
    """KEYS and ARGV of one LATEST_LWW_LUA call (its layout is described there)."""
    fields = [(feature_field(view.name, f.name), f.name, f.dtype) for f in view.features]
    names = [fld for fld, _, _ in fields] + [ts_field(view.name)]
    keys: list[bytes] = []
    argv: list[Any] = [order_field(view.name), int(key_ttl_s), len(names), *names]
    for row in rows:
        keys.append(row.redis_key)
        argv.append(order_value(row.event_us, row.created_us))
        for _, name, dtype in fields:
            argv.append(encode_value(dtype, row.values.get(name)))
        argv.append(encode_timestamp(row.event_us))
    return keys, argv


def hash_tag(key: bytes) -> bytes:
    """Redis Cluster's rule: the bytes between the first '{' and the next '}' when not
    empty, else the whole key (tile keys tag their entity: online.tiles.tile_key)."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def tag_groups(keys: Sequence[bytes]) -> list[list[int]]:
    """Indexes of `keys` grouped by hash tag, groups and members in first-seen order."""
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(hash_tag(key), []).append(i)
    return list(groups.values())


def pack_groups(groups: Iterable[list[int]], size: int) -> Iterator[list[int]]:
    """Whole groups packed into calls of at most `size` keys (a bigger group alone):
    one script call is atomic, so one entity's tile hashes change together."""
    chunk: list[int] = []
    for members in groups:
        if chunk and len(chunk) + len(members) > size:
            yield chunk
            chunk = []
        chunk += members
    if chunk:
        yield chunk


class RedisStore:
    """OnlineStore over one redis-py client (made by `open`, or handed in)."""

    def __init__(self, client: Any, cfg: RedisConfig | None = None) -> None:
        self.client = client
        self._cfg = cfg
        self._scripts: dict[str, Any] = {}

    @classmethod
    def open(cls, cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> RedisStore:
        """After a PING (a login or TLS problem is one line, exit code 2; no answer, 3)."""
        return cls(check_redis(cfg, timeout_s, **options), cfg)

    @property
    def config(self) -> RedisConfig:
        """Where this store is (for raw sockets opened next to it)."""
        if self._cfg is None:
            self._cfg = config_of(self.client)
        return self._cfg

    def script(self, lua: str) -> Any:
        """A redis-py Script (loaded on first use, EVALSHA after)."""
        found = self._scripts.get(lua)
        if found is None:
            found = self._scripts[lua] = self.client.register_script(lua)
        return found

    def load_script(self, lua: str) -> bytes:
        """SCRIPT LOAD: the sha for raw EVALSHA calls (batch materialize's packed writer)."""
        return str(self._call(self.client.script_load, lua)).encode()

    def packed_pipes(self, depth: int = 4) -> PackedPipes:
        """Raw pipelined writers beside this store, for callers that pack script calls
        themselves (batch materialize): here one, to this node."""
        return PackedPipes([self.config], None, depth)

    def _chunks(self, keys: Sequence[bytes], size: int) -> Iterator[list[int]]:
        """Indexes of `keys` per script call (one node: any keys together), never
        splitting the keys of one hash tag (an entity's tile hashes) across calls."""
        return pack_groups(tag_groups(keys), size)

    def _run_scripts(self, lua: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """Replies of one script's calls, in order, in one pipeline round trip (redis-py
        loads the script first where the server lacks it)."""
        script = self.script(lua)
        pipe = self.client.pipeline(transaction=False)
        for keys, args in calls:
            script(keys=keys, args=args, client=pipe)
        return list(self._call(pipe.execute))

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise StoreUnavailableError(f"Redis at {self.config.address}: {exc}") from None

    def write_latest(self, view: ViewSpec, rows: Sequence[LatestRow], *, key_ttl_s: int = 0) -> int:
        if not rows:
            return 0
        keys = [r.redis_key for r in rows]
        calls = [
            lww_arguments(view, [rows[i] for i in chunk], key_ttl_s)
            for chunk in self._chunks(keys, CHUNK_KEYS)
        ]
        return sum(int(n) for n in self._run_scripts(LATEST_LWW_LUA, calls))

    def read_tiles(
        self, fields: Sequence[tuple[bytes, bytes]], mark_keys: Sequence[bytes], mark: bytes
    ) -> tuple[list[bytes | None], list[int]]:
        if not fields and not mark_keys:
            return [], []
        pipe = self.client.pipeline(transaction=False)
        for key, fld in fields:
            pipe.hget(key, fld)
        for key in mark_keys:
            pipe.hget(key, mark)
        replies = self._call(pipe.execute)
        marks = [int(m) if m is not None else NO_MARK for m in replies[len(fields) :]]
        return list(replies[: len(fields)]), marks

    def apply_tiles(
        self, writes: Sequence[TileWrite], mark: bytes, new_mark: int, now_ms: int
    ) -> list[bytes]:
        """TILE_APPLY_LUA per chunk of keys, every chunk in one pipeline round trip."""
        if not writes:
            return []
        chunks = list(self._chunks([w.key for w in writes], TILE_CHUNK_KEYS))
        calls: list[ScriptCall] = []
        for chunk in chunks:
            argv: list[Any] = [now_ms, mark, new_mark]
            for i in chunk:
                w = writes[i]
                argv += (w.expected, w.expire_at_ms, w.prune_before_s, len(w.fields))
                for fld, value in w.fields:
                    argv += (fld, value)
            calls.append(([writes[i].key for i in chunk], argv))
        replies = self._run_scripts(TILE_APPLY_LUA, calls)
        # Each reply: the 1-based positions, within its chunk, of the keys not written.
        pairs = zip(chunks, replies, strict=True)
        return [writes[chunk[int(p) - 1]].key for chunk, reply in pairs for p in reply]

    def set_tiles(self, sets: Sequence[TileSet]) -> int:
        for lo in range(0, len(sets), _PIPELINE_KEYS):
            calls: list[ScriptCall] = []
            for one in sets[lo : lo + _PIPELINE_KEYS]:
                args: list[Any] = [one.expire_at_ms]
                for fld, value in one.fields:
                    args += (fld, value)
                calls.append(([one.key], args))
            self._run_scripts(TILE_SET_LUA, calls)
        return sum(len(s.fields) for s in sets)

    def get_watermark(self, key: bytes | str) -> int | None:
        raw = self._call(self.client.get, key)
        return int(raw) if raw is not None else None

    def raise_watermark(self, key: bytes | str, value: int) -> bool:
        return bool(self._call(self.script(RAISE_LUA), keys=[key], args=[int(value)]))

    def after_write(self) -> None:
        """WAIT for FEATURELINE_REDIS_WAIT_REPLICAS replicas (online_store.redis.durability;
        0, the default: a write is as safe as Redis's answer made it)."""
        cfg = self._cfg
        if cfg is not None and cfg.wait_replicas > 0:
            try:
                wait_if_configured(self.client, cfg)
            except redis.RedisError as exc:
                raise StoreUnavailableError(f"Redis at {self.config.address}: WAIT failed: {exc}") from None

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (redis.RedisError, OSError):
            return False

    def close(self) -> None:
        self.client.close()


class SentinelStore(RedisStore):
    """A Sentinel-managed primary (redis_type: redis_sentinel): redis-py's public
    Sentinel client, which finds the primary per connection and follows a failover;
    everything else is the one-node store's."""

    @classmethod
    def open(cls, cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> SentinelStore:
        """After discovery (clear errors for a Sentinel that does not know the master)."""
        return cls(sentinel_client(cfg, timeout_s=timeout_s, **options), cfg)

    @property
    def config(self) -> RedisConfig:
        """The primary now, as a one-node config (raw sockets: batch materialize's writer)."""
        assert self._cfg is not None
        return primary_config(self._cfg, discover_primary(self._cfg))
