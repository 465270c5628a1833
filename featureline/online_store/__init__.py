"""The online store behind one seam (online_store.base): every product path that reads or
writes online features goes through `open_store` (writers, sync) or `open_reader` (the
serving read path, asyncio); nothing outside this package talks to Redis.

The adapter follows the resolved config's `redis_type`, as Feast's RedisOnlineStore does:
"redis" (one node), "redis_cluster" (online_store.redis.cluster*: routed by hash slot)
and "redis_sentinel" (online_store.redis.sentinel: the primary found and followed
through the sentinels).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from featureline import _compiled
from featureline.online_store.base import (
    MARK_PREFIX,
    NO_MARK,
    LatestRow,
    OnlineReader,
    OnlineStore,
    StoreReplyError,
    StoreTimeoutError,
    StoreUnavailableError,
    TileSet,
    TileWrite,
    mark_field,
)

# The read path's modules are compiled (featureline._compiled.MODULES): a build older
# than its sources must be skipped before any of them is imported.
_compiled.install()

if TYPE_CHECKING:
    from featureline.config import RedisConfig
    from featureline.online_store.near_cache import NearCache

__all__ = [
    "MARK_PREFIX",
    "NO_MARK",
    "LatestRow",
    "OnlineReader",
    "OnlineStore",
    "StoreReplyError",
    "StoreTimeoutError",
    "StoreUnavailableError",
    "TileSet",
    "TileWrite",
    "as_store",
    "mark_field",
    "open_reader",
    "open_store",
]


def open_store(cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> OnlineStore:
    """The writers' store for `cfg`, after a PING (login/TLS errors: exit 2; no answer: 3).
    `options` go to the client (e.g. socket_timeout)."""
    cfg.require_supported()
    if cfg.redis_type == "redis_cluster":
        from featureline.online_store.redis.cluster_store import ClusterStore

        return ClusterStore.open(cfg, timeout_s, **options)
    if cfg.redis_type == "redis_sentinel":
        from featureline.online_store.redis.store import SentinelStore

        return SentinelStore.open(cfg, timeout_s, **options)
    from featureline.online_store.redis.store import RedisStore

    return RedisStore.open(cfg, timeout_s, **options)


def open_reader(cfg: RedisConfig, near_cache: NearCache | None = None, **options: Any) -> OnlineReader:
    """The serving read path's client for `cfg` (a cluster's slot map is read now; one
    node and a Sentinel's primary are connected on first use)."""
    from featureline.online_store.redis.aio import RedisClient

    cfg.require_supported()
    if cfg.redis_type == "redis_cluster":
        from featureline.online_store.redis.cluster_aio import ClusterReader

        return ClusterReader.from_config(cfg, near_cache=near_cache, **options)
    if cfg.redis_type == "redis_sentinel":
        from featureline.online_store.redis.sentinel import SentinelReader

        def node(primary: RedisConfig, cache: NearCache | None) -> RedisClient:
            return RedisClient.from_config(primary, near_cache=cache, **options)

        return SentinelReader(cfg, node, near_cache=near_cache)
    return RedisClient.from_config(cfg, near_cache=near_cache, **options)


def as_store(target: Any) -> OnlineStore:
    """`target` if it is a store already, else a redis-py client wrapped as one (callers
    and tests that hold a client of their own)."""
    if isinstance(target, OnlineStore):
        return target
    from featureline.online_store.redis.store import RedisStore

    return RedisStore(target)
