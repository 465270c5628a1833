"""The serving path's Redis Cluster reader: keys routed by hash slot, one pipelined
payload per primary, all primaries at once, replies put back in command order.

It holds one fast single-node client per primary (the asyncio hiredis client of the
read path, with its own CLIENT TRACKING connection when a near cache is on) and a
16384-entry table slot -> client, built from CLUSTER SLOTS (cluster.py).

Redirections and topology changes:
- MOVED slot host:port: that slot's route is patched at once, the commands that got it
  are sent again (at most MAX_REDIRECTS rounds), and a full refresh runs in the
  background;
- ASK slot host:port (a slot being migrated, this key already moved): ASKING + the
  command to the named node, once;
- a node that fails (refused, reset, timed out): the whole fetch raises a
  ServiceUnavailableError (serving answers UNAVAILABLE / 503), never a partial reply
  list; the slot map is then re-read from any live node every FAILED_CHECK_INTERVAL_S,
  so once a replica is promoted the reader routes to it by itself. A node too slow
  for one request's timeout fails that request only (ClusterTimeoutError, 504): its
  connection stays open for the others, its late replies dropped (RedisClient; a node
  that stays silent is closed by its client's stall watchdog);
- and a periodic check every CHECK_INTERVAL_S.

Near cache: one NearCache shared by every node's client. A node's lost connection
clears the whole cache (RedisClient does that: the simplest correct thing, since that
node's invalidations may have been missed), and so does any change of the slot map or
a MOVED (cached replies of a slot that moved were tracked by its old node).

Each node's client is the single-node RedisClient (online_store.redis.aio) unless
`from_config` is given another class (benchmarks, tests). One round's ordering by node
and its fan-out (a reply future per node, no task per node) are in cluster_fanout.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from binascii import crc_hqx
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

import hiredis

from featureline.config import RedisConfig
from featureline.errors import FeaturelineError
from featureline.online_store.redis.aio import RedisClient
from featureline.online_store.redis.cluster import (
    CLUSTER_SLOTS,
    SLOTS,
    SlotMap,
    check_covered,
    discover,
    key_slot,
    parse_slots,
    seeds_of,
)
from featureline.online_store.redis.cluster_fanout import (
    ClusterReplyError,
    ClusterTimeoutError,
    ClusterUnavailableError,
    NodeClient,
    Routes,
    order_by_node,
    send_all,
    send_one,
)
from featureline.online_store.redis.connect import login_commands, ssl_context

ReplyError = hiredis.ReplyError
ASKING = hiredis.pack_command(("ASKING",))
# A reply in these states is the cluster's, not the key's: the request may succeed later.
_UNAVAILABLE_PREFIXES = ("TRYAGAIN", "CLUSTERDOWN", "LOADING", "MASTERDOWN")
# Two rounds after the first: one for a MOVED, one more for a map that changed again
# meanwhile (a reshard moving many slots); more means the cluster is in flux.
MAX_REDIRECTS = 2
# The periodic check finds a change no request has hit yet (a failover of a node whose
# slots were idle); CLUSTER SLOTS costs the node ~20 us for a 3-primary cluster.
CHECK_INTERVAL_S = 5.0
# After a node failed, re-read the map this often until requests stop failing: a
# replica is promoted node-timeout + 0.5-1.5 s after its primary died (3-4 s with the
# dev stack's 2 s node timeout), so the reader follows within 0.25 s of the promotion.
FAILED_CHECK_INTERVAL_S = 0.25
# One CLUSTER SLOTS query of a refresh: a live node answers in well under 1 ms on a LAN.
CONTROL_TIMEOUT_S = 1.0
_SLOT_MASK = SLOTS - 1  # 16384 is a power of two: % SLOTS == & _SLOT_MASK
# Per-key node cache bound: 65,536 keys of ~60 bytes are ~12 MB with the dict; cleared
# when full.
OWNER_CACHE_KEYS = 1 << 16


# (host, port, near cache or None) -> a client of that node.
ClientFactory = Callable[[str, int, Any], NodeClient]


def slot_of(key: bytes) -> int:
    """redis.crc.key_slot, with its hash-tag scan skipped for keys without "{": the same
    CRC16 (binascii.crc_hqx), cheaper than key_slot's find + slice (benchmarks/cluster_routing)."""
    # bytes.find, not `in`: ~3x cheaper for a one-byte needle on CPython 3.11.
    if key.find(b"{") >= 0:
        return key_slot(key)
    return crc_hqx(key, 0) & _SLOT_MASK


class ClusterReader:
    """One per process and event loop: fetch(commands, keys) on a Redis Cluster."""

    def __init__(
        self,
        slot_map: SlotMap,
        factory: ClientFactory,
        *,
        near_cache: Any = None,
        seeds: Sequence[tuple[str, int]] = (),
    ) -> None:
        self.near_cache = near_cache
        self._factory = factory
        self._seeds = [f"{h}:{p}" for h, p in seeds]
        self._clients: dict[str, NodeClient] = {}  # read clients of primaries (tracked)
        self._control: dict[str, NodeClient] = {}  # CLUSTER SLOTS clients, no near cache
        self._map = check_covered(slot_map)
        # Routing: slot -> index into _nodes (-1: no node), and per key its node number
        # (cleared whenever a route changes, which is rare: a MOVED or a new map).
        self._nodes: list[NodeClient] = []
        self._node_of: list[int] = [-1] * SLOTS
        self._owner_of: dict[bytes, int] = {}
        self._build_route(slot_map)
        self._refresh_task: asyncio.Task[bool] | None = None
        self._failures = 0  # node failures since the last refresh began
        self._refreshed_at = time.monotonic()
        self._next_check = self._refreshed_at + CHECK_INTERVAL_S
        self.refreshes = 0  # slot maps adopted after the first (tests, metrics)

    @classmethod
    def from_config(
        cls,
        cfg: RedisConfig,
        client_class: Callable[..., NodeClient] | None = None,
        *,
        near_cache: Any = None,
        timeout_s: float = 2.0,
        **options: Any,
    ) -> ClusterReader:
        """Discover the cluster from the connection_string's seeds (validated: see
        cluster.discover) and build a client per primary with the cluster's login/TLS."""
        slot_map = discover(cfg, timeout_s)
        tls, login = ssl_context(cfg), login_commands(cfg)
        make = client_class or RedisClient

        def factory(host: str, port: int, cache: Any) -> NodeClient:
            return make(host, port, tls=tls, login=login, near_cache=cache, **options)

        return cls(slot_map, factory, near_cache=near_cache, seeds=seeds_of(cfg))

    @property
    def slot_map(self) -> SlotMap:
        return self._map

    @property
    def address(self) -> str:
        """Where reads go, for health answers: the primaries."""
        return "cluster " + ",".join(sorted({c.address for c in self._nodes}))

    # --- routing ---------------------------------------------------------------------

    def _client(self, address: str) -> NodeClient:
        client = self._clients.get(address)
        if client is None:
            host, port = address.rsplit(":", 1)
            client = self._clients[address] = self._factory(host, int(port), self.near_cache)
        return client

    def _build_route(self, slot_map: SlotMap) -> None:
        self._nodes = [self._client(n.address) for n in slot_map.primaries()]
        index = {n.address: i for i, n in enumerate(slot_map.primaries())}
        self._node_of = [-1 if n is None else index[n.address] for n in slot_map.owners()]
        self._owner_of.clear()
        # Clients of nodes the map no longer names (a dead primary, a removed node).
        known = {n.address for n in slot_map.nodes()}
        for address in [a for a in self._clients if a not in known]:
            self._clients.pop(address).close()

    def _route_slot(self, slot: int, address: str) -> None:
        """A MOVED: `slot` is served by `address` from now on."""
        client = self._client(address)
        if client not in self._nodes:
            self._nodes.append(client)
        self._node_of[slot] = self._nodes.index(client)
        self._owner_of.clear()

    def owners_of(self, keys: Sequence[bytes]) -> list[int]:
        """Each key's node number, through the per-key cache (a hit is one dict lookup,
        ~40 ns; a miss slot_of + the slot table, ~0.3 us: benchmarks/cluster_routing)."""
        cache = self._owner_of
        owners = list(map(cache.get, keys))
        if None in owners:
            if len(cache) >= OWNER_CACHE_KEYS:
                cache.clear()
            node_of = self._node_of
            for i, owner in enumerate(owners):
                if owner is None:
                    key = keys[i]
                    owners[i] = cache[key] = node_of[slot_of(key)]
        return owners  # type: ignore[return-value]  # no None is left

    def route(self, keys: Sequence[bytes]) -> Routes:
        """Where each command of one round goes (keys[i] is what command i reads)."""
        return order_by_node(self.owners_of(keys), self._nodes, keys)

    # --- reads -----------------------------------------------------------------------

    async def fetch(
        self, commands: Sequence[bytes], keys: Sequence[bytes], timeout_s: float | None = None
    ) -> list[Any]:
        """The reply of each packed command (commands[i] reads keys[i]), in order; raises
        a ServiceUnavailableError if any node cannot answer (never a partial list)."""
        now = time.monotonic()
        if now >= self._next_check:
            self._start_refresh()
        if not commands:
            return []
        deadline = None if timeout_s is None else now + timeout_s
        replies, moved = await self._round(commands, keys, deadline)
        for _ in range(MAX_REDIRECTS):
            if not moved:
                return replies
            again, moved_again = await self._round(
                [commands[i] for i in moved], [keys[i] for i in moved], deadline
            )
            for i, reply in zip(moved, again, strict=True):
                replies[i] = reply
            moved = [moved[j] for j in moved_again]
        if not moved:
            return replies
        raise ClusterUnavailableError(
            f"Redis Cluster: {len(moved)} commands still redirected (MOVED) after "
            f"{MAX_REDIRECTS} retries; slots are moving, try again"
        )

    async def _round(
        self, commands: Sequence[bytes], keys: Sequence[bytes], deadline: float | None
    ) -> tuple[list[Any], list[int]]:
        """Send the commands to their primaries, one payload each, all at once; returns
        the replies in command order and the positions that got MOVED (their slots
        re-routed) for the next round."""
        routes = self.route(keys)
        timeout = self._left(deadline)
        if not routes.order:
            ((client, count),) = routes.groups
            flat = await send_one(client, b"".join(commands), count, timeout, self._node_failed)
        else:
            # itemgetter picks in one C call (~10 ns an item, a third of map + getitem);
            # two or more commands here, so it returns a tuple.
            ordered = itemgetter(*routes.order)(commands)
            sends = []
            start = 0
            for client, count in routes.groups:
                sends.append((client, b"".join(ordered[start : start + count]), count))
                start += count
            flat = list(chain.from_iterable(await send_all(sends, timeout, self._node_failed)))
        if len(flat) != len(commands):
            raise ClusterUnavailableError(f"Redis Cluster: {len(flat)} replies to {len(commands)} commands")
        replies = list(itemgetter(*routes.inverse)(flat)) if routes.inverse else flat
        moved: list[int] = []
        # aio.py's hiredis Reader has no custom error class: an error reply's type is
        # exactly ReplyError, and `in map(type, ...)` is ~2x cheaper than isinstance.
        if ReplyError in map(type, flat):
            asked = self._errors(routes, flat, moved)
            if asked:
                await self._follow_asks(commands, asked, replies, deadline)
        return replies, moved

    def _errors(self, routes: Routes, flat: list[Any], moved: list[int]) -> dict[str, list[int]]:
        """Error replies (in node order, `flat`): MOVED positions appended to `moved`,
        ASK positions by node returned; anything else raises."""
        asked: dict[str, list[int]] = {}
        position = 0
        for client, count in routes.groups:
            for j in range(position, position + count):
                reply = flat[j]
                if isinstance(reply, ReplyError):
                    i = routes.order[j] if routes.order else j
                    self._redirect(client, i, reply, moved, asked)
            position += count
        return asked

    def _redirect(
        self,
        client: NodeClient,
        i: int,
        reply: hiredis.ReplyError,
        moved: list[int],
        asked: dict[str, list[int]],
    ) -> None:
        text = str(reply)
        if text.startswith("MOVED "):
            _, slot, address = text.split(" ", 2)
            self._route_slot(int(slot), address)
            if self.near_cache is not None:
                self.near_cache.clear()
            self._next_check = 0.0  # a full refresh at the next request
            moved.append(i)
        elif text.startswith("ASK "):
            _, _slot, address = text.split(" ", 2)
            asked.setdefault(address, []).append(i)
        elif text.startswith(_UNAVAILABLE_PREFIXES):
            raise ClusterUnavailableError(f"Redis Cluster node {client.address}: {text}")
        else:
            raise ClusterReplyError(f"Redis error from {client.address}: {text}")

    async def _follow_asks(
        self,
        commands: Sequence[bytes],
        asked: dict[str, list[int]],
        replies: list[Any],
        deadline: float | None,
    ) -> None:
        """ASKING + command to the node a migrating slot's key already lives on, once."""
        timeout = self._left(deadline)
        targets = [(self._client(address), indexes) for address, indexes in asked.items()]
        sends = [
            (client, b"".join([ASKING + commands[i] for i in indexes]), 2 * len(indexes))
            for client, indexes in targets
        ]
        for (client, indexes), got in zip(
            targets, await send_all(sends, timeout, self._node_failed), strict=True
        ):
            for i, reply in zip(indexes, got[1::2], strict=True):
                if isinstance(reply, hiredis.ReplyError):
                    raise ClusterUnavailableError(f"Redis Cluster node {client.address} after ASK: {reply}")
                replies[i] = reply

    def _left(self, deadline: float | None) -> float | None:
        if deadline is None:
            return None
        left = deadline - time.monotonic()
        if left <= 0:
            raise ClusterTimeoutError(
                "Redis Cluster: the request's time ran out while following redirections"
            )
        return left

    # --- topology --------------------------------------------------------------------

    def _node_failed(self) -> None:
        """A node did not answer: re-read the map soon, and keep doing so while
        requests fail (refresh picks the short interval)."""
        self._failures += 1
        self._next_check = min(self._next_check, self._refreshed_at + FAILED_CHECK_INTERVAL_S)
        if time.monotonic() >= self._next_check:
            self._start_refresh()

    def _start_refresh(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            return
        self._refreshed_at = time.monotonic()
        self._next_check = self._refreshed_at + CHECK_INTERVAL_S
        self._refresh_task = asyncio.get_running_loop().create_task(self.refresh())

    def _candidates(self) -> list[str]:
        """Where to ask for the map: the last node that told us, every node of the map,
        then the configured seeds."""
        known = [self._map.source, *(n.address for n in self._map.nodes()), *self._seeds]
        return list(dict.fromkeys(known))

    async def refresh(self) -> bool:
        """Re-read CLUSTER SLOTS from the first live node and adopt its map (if every
        slot is covered). True when the routes changed."""
        self._failures = 0
        try:
            for address in self._candidates():
                slot_map = await self._ask_map(address)
                if slot_map is not None:
                    return self._adopt(slot_map)
            return False
        finally:
            # min: a MOVED seen meanwhile (next check 0) still gets its own refresh.
            interval = FAILED_CHECK_INTERVAL_S if self._failures else CHECK_INTERVAL_S
            self._next_check = min(self._next_check, time.monotonic() + interval)

    async def _ask_map(self, address: str) -> SlotMap | None:
        client = self._control.get(address)
        if client is None:
            host, port = address.rsplit(":", 1)
            client = self._control[address] = self._factory(host, int(port), None)
        try:
            (reply,) = await client.execute_packed(CLUSTER_SLOTS, 1, CONTROL_TIMEOUT_S, raw=True)
            if isinstance(reply, hiredis.ReplyError):
                return None
            return check_covered(SlotMap.build(parse_slots(reply, address), address))
        except FeaturelineError:  # unreachable, or a map with holes: ask the next node
            return None

    def _adopt(self, slot_map: SlotMap) -> bool:
        changed = slot_map.routes() != self._map.routes()
        self._map = slot_map
        if changed:
            self.refreshes += 1
            self._build_route(slot_map)
            if self.near_cache is not None:
                self.near_cache.clear()
        known = {n.address for n in slot_map.nodes()} | set(self._seeds)
        for address in [a for a in self._control if a not in known]:
            self._control.pop(address).close()
        return changed

    # --- health ----------------------------------------------------------------------

    async def ping(self, timeout_s: float = 0.5) -> bool:
        """True when every primary answers PING."""
        clients = [self._nodes[n] for n in sorted(set(self._node_of)) if n >= 0]
        results = await asyncio.gather(*(c.ping(timeout_s) for c in clients))
        return all(results)

    def close(self) -> None:
        if self._refresh_task is not None:
            with contextlib.suppress(RuntimeError):  # its loop may be closed already
                self._refresh_task.cancel()
        for client in [*self._clients.values(), *self._control.values()]:
            client.close()
        self._clients.clear()
        self._control.clear()


__all__ = [
    "ClientFactory",
    "ClusterReader",
    "ClusterReplyError",
    "ClusterTimeoutError",
    "ClusterUnavailableError",
    "NodeClient",
    "Routes",
    "slot_of",
]
