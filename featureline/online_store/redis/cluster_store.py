"""The writers' store on Redis Cluster (redis_type: redis_cluster), over redis-py's public
RedisCluster client: the one-node store (online_store.redis.store) with keys grouped by
hash slot.

- Script calls: the same Lua (online_store.redis.scripts) with the keys of one hash slot
  per call (a cluster refuses a script whose keys span slots, CROSSSLOT); each batch of
  calls is one ClusterPipeline, which sends every primary its part and follows MOVED/ASK.
  Keys spread over 16,384 slots, so a stream batch of 1,000 keys is ~1,000 one-key
  calls, and a materialize of 1M entities ~16k calls of ~61 keys.
- Scripts: SCRIPT LOAD goes to every primary; a NOSCRIPT (a replica promoted after a
  failover that never saw the load, or a SCRIPT FLUSH) reloads the script on every
  primary and sends the calls that got it once more (a NOSCRIPT call did nothing, so
  this is exact, even for the compare-and-set of tiles).
- Watermarks are single keys (GET and a one-key script): redis-py routes them.
- after_write: WAIT per primary (online_store.redis.durability): a marker key in one of
  that primary's slots, written and WAITed on that primary's own connection.
- Batch materialize's packed writes: `packed_pipes` routes rows by slot to one raw
  pipelined writer per primary (online_store.redis.pipe).

Topology is validated first by online_store.redis.cluster.discover, whose errors name
the node (two clusters, uncovered slots, a node not in cluster mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException

from featureline.config import RedisConfig
from featureline.online_store.base import StoreUnavailableError
from featureline.online_store.redis.cluster import SLOTS, discover, node_config, seeds_of
from featureline.online_store.redis.cluster_aio import slot_of
from featureline.online_store.redis.connect import redis_error, redis_kwargs
from featureline.online_store.redis.durability import MARKER_KEY, wait_for_replicas
from featureline.online_store.redis.pipe import PackedPipes
from featureline.online_store.redis.store import RedisStore, ScriptCall, pack_groups, tag_groups

# What redis-py's cluster client raises: RedisError, and RedisClusterException (not a
# RedisError) for a slot no node serves or a cluster it cannot map.
_ERRORS = (redis.RedisError, RedisClusterException, OSError)
# A marker key per primary needs a hash tag in that primary's slots: with P primaries,
# ~P*ln(P) tags are tried (3 primaries: ~6); the bound only guards a broken map.
_MARKER_TRIES = 100_000


def cluster_client(cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> RedisCluster:
    """redis-py's RedisCluster from the Feast config: every node of the connection string
    as a startup node, the login and TLS options of every node, no db (only 0 exists)."""
    kwargs = {k: v for k, v in redis_kwargs(cfg).items() if k not in ("host", "port", "db")}
    kwargs.setdefault("socket_connect_timeout", timeout_s)
    startup = [ClusterNode(host, port) for host, port in seeds_of(cfg)]
    try:
        return RedisCluster(startup_nodes=startup, **kwargs, **options)
    except _ERRORS as exc:
        raise redis_error(cfg, exc) from None


class ClusterStore(RedisStore):
    """OnlineStore over a RedisCluster client (made by `open`, or handed in with its
    config)."""

    def __init__(self, client: Any, cfg: RedisConfig | None = None) -> None:
        super().__init__(client, cfg)
        self._markers: dict[str, bytes] = {}  # primary "host:port" -> a key of its slots
        self._loaded: set[str] = set()  # scripts loaded on every primary

    @classmethod
    def open(cls, cfg: RedisConfig, timeout_s: float = 5.0, **options: Any) -> ClusterStore:
        """After `discover` (clear errors naming the node) and redis-py's own mapping."""
        discover(cfg, timeout_s=min(timeout_s, 2.0))
        return cls(cluster_client(cfg, timeout_s, **options), cfg)

    def _chunks(self, keys: Sequence[bytes], size: int) -> Iterator[list[int]]:
        """Indexes of `keys` per script call: one hash slot's keys, at most `size`, an
        entity's tile hashes (one hash tag, so one slot) never split across calls."""
        by_slot: dict[int, list[list[int]]] = {}
        for members in tag_groups(keys):
            by_slot.setdefault(slot_of(keys[members[0]]), []).append(members)
        for groups in by_slot.values():
            yield from pack_groups(groups, size)

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _ERRORS as exc:
            raise self._failed(exc) from None

    def _failed(self, exc: BaseException | str) -> StoreUnavailableError:
        """The error to raise, after re-reading the slot map: redis-py re-reads it only
        when a pipeline cannot connect, so after a failover a call that reached no dead
        node (a WAIT, a read) would route to the dead primary for ever."""
        with contextlib.suppress(*_ERRORS):
            self.client.nodes_manager.initialize()
        return StoreUnavailableError(f"Redis Cluster at {self.config.address}: {exc}")

    def _run_scripts(self, lua: str, calls: Sequence[ScriptCall]) -> list[Any]:
        """EVALSHA per call in one ClusterPipeline (each primary gets its calls); calls
        answered NOSCRIPT are sent again after the script is loaded on every primary."""
        sha = self._sha(lua)
        replies = self._pipeline(sha, calls)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            self._call(self.client.script_load, lua)  # every primary (redis-py: SCRIPT LOAD)
            again = self._pipeline(sha, [calls[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        failed = next((r for r in replies if isinstance(r, Exception)), None)
        if failed is not None:
            raise self._failed(failed)
        return replies

    def _sha(self, lua: str) -> str:
        """The script's sha, loaded on every primary on first use (not a NOSCRIPT
        round trip per call of the first batch)."""
        script = self.script(lua)
        if lua not in self._loaded:
            self._call(self.client.script_load, lua)
            self._loaded.add(lua)
        return str(script.sha)

    def _pipeline(self, sha: str, calls: Sequence[ScriptCall]) -> list[Any]:
        # EVALSHA through execute_command with the node named: redis-py blocks
        # pipe.evalsha in cluster pipelines, and left to itself asks a node COMMAND
        # GETKEYS for every EVALSHA (a round trip each, to one node: with that node dead,
        # every call fails). get_node_from_key routes by the client's slot map.
        try:
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls:
                node = self.client.get_node_from_key(keys[0])
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args, target_nodes=node)
            return list(pipe.execute(raise_on_error=False))
        except _ERRORS as exc:
            raise self._failed(exc) from None

    def load_script(self, lua: str) -> bytes:
        """SCRIPT LOAD on every primary: the sha for raw EVALSHA calls."""
        return str(self._call(self.client.script_load, lua)).encode()

    def packed_pipes(self, depth: int = 4) -> PackedPipes:
        """One raw pipelined writer per primary of the slot map as it is now, rows routed
        by slot (a slot that moves during the write fails it with MOVED: rerun, the
        writes are idempotent)."""
        slot_map = discover(self.config, timeout_s=2.0)
        primaries = slot_map.primaries()
        index = {node: i for i, node in enumerate(primaries)}
        owners = np.zeros(SLOTS, dtype=np.int32)
        for r in slot_map.ranges:
            owners[r.start : r.end + 1] = index[r.primary]
        nodes = [node_config(self.config, n.host, n.port) for n in primaries]
        return PackedPipes(nodes, owners, depth)

    def after_write(self) -> None:
        """WAIT on every primary for FEATURELINE_REDIS_WAIT_REPLICAS replicas: each
        primary replicates its own log, so each needs its marker (a key in its slots)."""
        cfg = self._cfg
        if cfg is None or cfg.wait_replicas <= 0:
            return
        try:
            primaries = self.client.get_primaries()
            for node in primaries:
                conn = self.client.get_redis_connection(node)
                marker = self._marker(node.name)
                wait_for_replicas(conn, cfg.wait_replicas, cfg.wait_timeout_ms, marker_key=marker.decode())
        except _ERRORS as exc:
            raise self._failed(f"WAIT failed: {exc}") from None

    def _marker(self, node_name: str) -> bytes:
        """A marker key whose slot `node_name` serves now (kept while it still does)."""
        found = self._markers.get(node_name)
        if found is not None and self.client.get_node_from_key(found).name == node_name:
            return found
        for tag in range(_MARKER_TRIES):
            key = b"%s:{%d}" % (MARKER_KEY.encode(), tag)
            if self.client.get_node_from_key(key).name == node_name:
                self._markers[node_name] = key
                return key
        raise StoreUnavailableError(f"Redis Cluster: no slot of {node_name} found for the WAIT marker")

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except _ERRORS:
            return False
