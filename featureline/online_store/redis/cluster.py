"""Redis Cluster topology: the seeds of a Feast `connection_string`, CLUSTER SLOTS, and
the slot -> primary (and replicas) map every cluster client routes by.

Pure where it can be: `parse_slots`, `SlotMap`, `check_covered` and `check_same_cluster`
take plain values (a CLUSTER SLOTS reply as hiredis or redis-py return it). `discover`
is the one function with I/O: it asks every seed, over the same logged-in (and TLS)
sockets as featureline.online_store.redis.connect opens for one node, and validates what they say.

Errors name the node: a seed not in cluster mode and seeds of two different clusters are
configuration errors (BadInputError, exit 2); no seed answering and slots no node serves
are an unavailable service (ServiceUnavailableError, exit 3: a cluster still being
created, or one that lost a primary without a replica, may recover).

A key's slot is redis-py's public `redis.crc.key_slot` (CRC16-XMODEM of the key, or of
its `{hash tag}`, mod 16384), the function its own RedisCluster routes by.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from featureline.config import RedisConfig
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.redis.connect import open_socket, redis_error

SLOTS = REDIS_CLUSTER_HASH_SLOTS  # 16384
CLUSTER_SLOTS = hiredis.pack_command(("CLUSTER", "SLOTS"))  # type: ignore[arg-type]


@dataclass(frozen=True)
class ClusterNode:
    host: str
    port: int
    node_id: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SlotRange:
    start: int
    end: int  # inclusive, as CLUSTER SLOTS reports it
    primary: ClusterNode
    replicas: tuple[ClusterNode, ...] = ()

    @property
    def label(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _node(raw: Any, seed_host: str) -> ClusterNode:
    # [host, port, id, ...]: Redis 7 appends a hostname map. An empty host means "the
    # address you reached me on" (a node that has not learned its own IP yet).
    host = _text(raw[0]) or seed_host
    node_id = _text(raw[2]) if len(raw) > 2 else ""
    return ClusterNode(host, int(raw[1]), node_id)


def parse_slots(reply: Any, seed: str) -> list[SlotRange]:
    """CLUSTER SLOTS (a list of [start, end, primary, replica...]) as SlotRanges."""
    seed_host = seed.rsplit(":", 1)[0]
    if not isinstance(reply, list | tuple):
        raise BadInputError(f"Redis at {seed}: CLUSTER SLOTS answered {reply!r}, not a list of slot ranges")
    ranges: list[SlotRange] = []
    try:
        for entry in reply:
            primary = _node(entry[2], seed_host)
            replicas = tuple(_node(r, seed_host) for r in entry[3:])
            ranges.append(SlotRange(int(entry[0]), int(entry[1]), primary, replicas))
    except (IndexError, TypeError, ValueError) as exc:
        raise BadInputError(f"Redis at {seed}: unreadable CLUSTER SLOTS reply ({exc})") from None
    return ranges


@dataclass(frozen=True)
class SlotMap:
    """What one node (`source`) said the cluster looks like, ranges sorted by slot."""

    ranges: tuple[SlotRange, ...]
    source: str

    @classmethod
    def build(cls, ranges: Iterable[SlotRange], source: str) -> SlotMap:
        return cls(tuple(sorted(ranges, key=lambda r: r.start)), source)

    def primaries(self) -> list[ClusterNode]:
        """Each primary once, in slot order."""
        return list(dict.fromkeys(r.primary for r in self.ranges))

    def nodes(self) -> list[ClusterNode]:
        """Primaries, then replicas, each once."""
        replicas = (n for r in self.ranges for n in r.replicas)
        return list(dict.fromkeys([*self.primaries(), *replicas]))

    def node_ids(self) -> frozenset[str]:
        return frozenset(n.node_id for n in self.nodes() if n.node_id)

    def uncovered(self) -> list[tuple[int, int]]:
        """Slot ranges (inclusive) that no primary serves."""
        gaps: list[tuple[int, int]] = []
        following = 0  # the first slot not yet seen covered
        for r in self.ranges:
            if r.start > following:
                gaps.append((following, r.start - 1))
            following = max(following, r.end + 1)
        if following < SLOTS:
            gaps.append((following, SLOTS - 1))
        return gaps

    def owners(self) -> list[ClusterNode | None]:
        """The primary of each slot (None where uncovered): a table of 16384 entries,
        so routing a key is one index after its slot."""
        table: list[ClusterNode | None] = [None] * SLOTS
        for r in self.ranges:
            table[r.start : r.end + 1] = [r.primary] * (r.end - r.start + 1)
        return table

    def routes(self) -> dict[str, tuple[str, ...]]:
        """Primary address -> its slot range labels: what changes when slots move."""
        out: dict[str, list[str]] = {}
        for r in self.ranges:
            out.setdefault(r.primary.address, []).append(r.label)
        return {a: tuple(labels) for a, labels in out.items()}

    def role_of(self, address: str) -> str:
        """ "primary", "replica of <address>", or "" when the map does not name it."""
        for r in self.ranges:
            if r.primary.address == address:
                return "primary"
            for replica in r.replicas:
                if replica.address == address:
                    return f"replica of {r.primary.address}"
        return ""


def _ranges_text(gaps: Sequence[tuple[int, int]]) -> str:
    first = gaps[0]
    text = f"slots {first[0]}-{first[1]}" if first[0] != first[1] else f"slot {first[0]}"
    return text + (f" (and {len(gaps) - 1} more ranges)" if len(gaps) > 1 else "")


def check_covered(slot_map: SlotMap) -> SlotMap:
    """Every slot served by a primary, or ServiceUnavailableError naming the node that
    reported the map and the first uncovered range."""
    gaps = slot_map.uncovered()
    if not slot_map.ranges:
        raise ServiceUnavailableError(
            f"Redis Cluster node {slot_map.source} serves no slots and knows no node that does "
            "(a node not yet joined to a cluster?); create the cluster first (redis-cli --cluster create)"
        )
    if gaps:
        covered = SLOTS - sum(end - start + 1 for start, end in gaps)
        raise ServiceUnavailableError(
            f"Redis Cluster seen from {slot_map.source}: {_ranges_text(gaps)} are served by no "
            f"node ({covered} of {SLOTS} slots covered); keys there can be neither read nor "
            "written: assign them (redis-cli --cluster fix) or bring their primary back"
        )
    return slot_map


def check_same_cluster(maps: Sequence[SlotMap]) -> None:
    """Seeds of one cluster report maps that share node ids (during a failover the maps
    of two nodes may differ, but never in every node). Disjoint ids: two clusters."""
    first = maps[0]
    for other in maps[1:]:
        if not first.node_ids() & other.node_ids():
            raise BadInputError(
                "online_store connection_string names nodes of two different Redis Clusters: "
                f"{first.source} belongs to one with primaries "
                f"{', '.join(n.address for n in first.primaries())}, {other.source} to one with "
                f"primaries {', '.join(n.address for n in other.primaries())} (no node in common); "
                "list nodes of one cluster only"
            )


def node_config(cfg: RedisConfig, host: str, port: int) -> RedisConfig:
    """The single-node config of one cluster node: the cluster's login and TLS."""
    return dataclasses.replace(cfg, host=host, port=port, nodes=((host, port),), redis_type="redis")


def slots_reply_error(address: str, reply: hiredis.ReplyError) -> Exception:
    text = str(reply)
    if "cluster support disabled" in text.lower():
        return BadInputError(
            f"Redis at {address} is not in cluster mode ({text}) but online_store says "
            "redis_type: redis_cluster; use redis_type: redis for a single Redis"
        )
    return ServiceUnavailableError(f"Redis Cluster node {address}: CLUSTER SLOTS failed: {text}")


def fetch_slot_map(cfg: RedisConfig, host: str, port: int, timeout_s: float) -> SlotMap:
    """CLUSTER SLOTS from one node, on a socket logged in as featureline.online_store.redis.connect does."""
    node = node_config(cfg, host, port)
    sock = open_socket(node, timeout_s)
    try:
        sock.sendall(CLUSTER_SLOTS)
        reader = hiredis.Reader()
        reply: Any = False
        while reply is False:
            data = sock.recv(65536)
            if not data:
                raise ServiceUnavailableError(f"Redis at {node.address} closed the connection")
            reader.feed(data)
            reply = reader.gets()
    except OSError as exc:
        raise redis_error(node, exc) from None
    finally:
        sock.close()
    if isinstance(reply, hiredis.ReplyError):
        raise slots_reply_error(node.address, reply)
    return SlotMap.build(parse_slots(reply, node.address), node.address)


def seeds_of(cfg: RedisConfig) -> list[tuple[str, int]]:
    return list(cfg.nodes) or [(cfg.host, cfg.port)]


def discover(cfg: RedisConfig, timeout_s: float = 2.0) -> SlotMap:
    """The cluster's slot map, asked of every seed: each reachable seed must be a cluster
    node with every slot covered, and all of one cluster. Returns the first seed's map."""
    if cfg.db:
        raise BadInputError(
            f"online_store db {cfg.db}: a Redis Cluster has only db 0 (redis_type: redis_cluster)"
        )
    maps: list[SlotMap] = []
    unreachable: list[str] = []
    for host, port in seeds_of(cfg):
        try:
            maps.append(fetch_slot_map(cfg, host, port, timeout_s))
        except BadInputError:
            raise
        except ServiceUnavailableError as exc:
            unreachable.append(str(exc))
    if not maps:
        raise ServiceUnavailableError(
            f"no node of the Redis Cluster answers ({len(unreachable)} tried): " + "; ".join(unreachable)
        )
    for slot_map in maps:
        check_covered(slot_map)
    check_same_cluster(maps)
    return maps[0]


__all__ = [
    "SLOTS",
    "ClusterNode",
    "SlotMap",
    "SlotRange",
    "check_covered",
    "check_same_cluster",
    "discover",
    "fetch_slot_map",
    "key_slot",
    "node_config",
    "parse_slots",
    "seeds_of",
    "slots_reply_error",
]
