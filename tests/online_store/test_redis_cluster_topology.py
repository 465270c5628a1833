"""Redis Cluster topology (featureline.online_store.redis.cluster): the pure parts with
plain values, then discovery and its errors against a real local cluster."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from redis_cluster_helpers import LocalCluster

from featureline.cli.devstack import free_port
from featureline.config import RedisConfig, parse_connection_string
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.redis.cluster import (
    SLOTS,
    ClusterNode,
    SlotMap,
    SlotRange,
    check_covered,
    check_same_cluster,
    discover,
    key_slot,
    parse_slots,
)
from featureline.online_store.redis.cluster_aio import slot_of

A, B, C = (ClusterNode("10.0.0.1", 7000 + i, f"{i:040x}") for i in range(3))
A2 = ClusterNode("10.0.0.2", 7100, "a" * 40)


def _reply(*ranges: tuple[int, int, ClusterNode, tuple[ClusterNode, ...]]) -> list[object]:
    """A CLUSTER SLOTS reply as hiredis returns it (bytes hosts and ids)."""
    return [
        [start, end, *([n.host.encode(), n.port, n.node_id.encode()] for n in (primary, *replicas))]
        for start, end, primary, replicas in ranges
    ]


THREE = _reply((0, 5460, A, (A2,)), (5461, 10922, B, ()), (10923, 16383, C, ()))


def test_parse_slots_reads_primaries_replicas_and_ids() -> None:
    ranges = parse_slots(THREE, "10.0.0.1:7000")
    assert ranges[0] == SlotRange(0, 5460, A, (A2,))
    assert [r.primary for r in ranges] == [A, B, C]


def test_an_empty_host_is_the_address_the_seed_was_reached_on() -> None:
    (r,) = parse_slots([[0, 16383, [b"", 7000, b"x" * 40]]], "192.168.1.9:7000")
    assert r.primary == ClusterNode("192.168.1.9", 7000, "x" * 40)


def test_a_reply_that_is_not_a_slot_list_names_the_seed() -> None:
    with pytest.raises(BadInputError, match="10.0.0.1:7000"):
        parse_slots(b"OK", "10.0.0.1:7000")
    with pytest.raises(BadInputError, match="unreadable"):
        parse_slots([[0, 16383]], "10.0.0.1:7000")


def test_owners_route_every_slot_to_its_primary() -> None:
    slot_map = check_covered(SlotMap.build(reversed(parse_slots(THREE, "s:1")), "s:1"))
    owners = slot_map.owners()
    assert (owners[0], owners[5460], owners[5461], owners[16383]) == (A, A, B, C)
    assert slot_map.primaries() == [A, B, C]
    assert slot_map.nodes() == [A, B, C, A2]
    assert slot_map.routes() == {
        A.address: ("0-5460",),
        B.address: ("5461-10922",),
        C.address: ("10923-16383",),
    }
    assert slot_map.role_of(A2.address) == f"replica of {A.address}"


def test_uncovered_slots_name_the_first_gap_and_the_reporting_node() -> None:
    ranges = parse_slots(_reply((0, 99, A, ()), (200, 16000, B, ())), "10.0.0.1:7000")
    slot_map = SlotMap.build(ranges, "10.0.0.1:7000")
    assert slot_map.uncovered() == [(100, 199), (16001, 16383)]
    with pytest.raises(ServiceUnavailableError, match=r"from 10\.0\.0\.1:7000: slots 100-199 \(and 1 more"):
        check_covered(slot_map)


def test_a_node_with_no_slots_is_not_a_cluster_yet() -> None:
    with pytest.raises(ServiceUnavailableError, match="serves no slots"):
        check_covered(SlotMap.build([], "10.0.0.9:7000"))


def test_seeds_of_two_clusters_are_refused() -> None:
    one = SlotMap.build(parse_slots(THREE, A.address), A.address)
    # The same cluster seen mid-failover (A's replica promoted) shares B and C: fine.
    failover = _reply((0, 5460, A2, ()), (5461, 10922, B, ()), (10923, 16383, C, ()))
    check_same_cluster([one, SlotMap.build(parse_slots(failover, B.address), B.address)])
    other = [ClusterNode("10.0.1.1", 7000 + i, f"{i + 9:040x}") for i in range(3)]
    foreign = _reply(*((i * 5461, min(SLOTS - 1, i * 5461 + 5460), n, ()) for i, n in enumerate(other)))
    with pytest.raises(
        BadInputError, match=r"two different Redis Clusters: 10\.0\.0\.1:7000 .* 10\.0\.1\.1:7000"
    ):
        check_same_cluster([one, SlotMap.build(parse_slots(foreign, "10.0.1.1:7000"), "10.0.1.1:7000")])


def test_slot_of_equals_redis_py_key_slot_with_and_without_hash_tags() -> None:
    rng = random.Random(13)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))) for _ in range(3000)]
    keys += [b"{user1000}.following", b"foo{}{bar}", b"foo{{bar}}zap", b"{}", b"{", b"a{b}c{d}"]
    assert [slot_of(k) for k in keys] == [key_slot(k) for k in keys]
    assert slot_of(b"{user1000}.following") == slot_of(b"{user1000}.followers")
    assert slot_of(b"123456789") == 0x31C3 % SLOTS  # CRC16-XMODEM check value of the spec


def test_connection_string_nodes_reach_the_config() -> None:
    nodes, options = parse_connection_string("h1:7000,h2:7001,password=pw,ssl=true")
    assert nodes == [("h1", 7000), ("h2", 7001)] and options["password"] == "pw"


# --- against a real cluster --------------------------------------------------------------


def test_discover_maps_what_redis_py_routes_by(redis_cluster: LocalCluster) -> None:
    slot_map = discover(redis_cluster.config(seeds=6))
    assert len(slot_map.primaries()) == 3 and len(slot_map.nodes()) == 6
    assert slot_map.uncovered() == []
    reference = redis_cluster.client()
    try:
        for key in (b"a", b"user:1", b"{t}x", b"\x00\xff{"):
            expected = reference.get_node_from_key(key)
            assert slot_map.owners()[key_slot(key)].address == f"{expected.host}:{expected.port}"  # type: ignore[union-attr]
    finally:
        reference.close()


def test_discover_skips_a_dead_seed_and_names_all_when_none_answers(redis_cluster: LocalCluster) -> None:
    dead = ("127.0.0.1", free_port())
    cfg = redis_cluster.config()
    alive = RedisConfig(redis_type="redis_cluster", host=dead[0], port=dead[1], nodes=(dead, *cfg.nodes))
    assert len(discover(alive).primaries()) == 3
    with pytest.raises(ServiceUnavailableError, match=rf"no node of the Redis Cluster answers.*{dead[1]}"):
        discover(RedisConfig(redis_type="redis_cluster", host=dead[0], port=dead[1], nodes=(dead,)))


def test_a_single_redis_is_not_a_cluster(stack: object) -> None:
    from featureline.settings import Settings

    assert isinstance(stack, Settings)
    cfg = RedisConfig(redis_type="redis_cluster", host=stack.redis_host, port=stack.redis_port)
    with pytest.raises(BadInputError, match=rf"{stack.redis_port} is not in cluster mode"):
        discover(cfg)


def test_seeds_of_two_real_clusters_are_refused(redis_cluster: LocalCluster, tmp_path: Path) -> None:
    from redis_cluster_helpers import running_cluster

    with running_cluster(tmp_path) as other:
        seeds = (redis_cluster.seeds[0], other.seeds[0])
        cfg = RedisConfig(redis_type="redis_cluster", host=seeds[0][0], port=seeds[0][1], nodes=seeds)
        with pytest.raises(BadInputError, match=f"two different Redis Clusters: .*{other.seeds[0][1]}"):
            discover(cfg)


def test_a_cluster_with_uncovered_slots_names_the_range(tmp_path: Path) -> None:
    from redis_cluster_helpers import running_cluster

    with running_cluster(tmp_path) as cluster:
        first = cluster.nodes[0]
        client = cluster.node_client(first.port)
        try:
            client.execute_command("CLUSTER DELSLOTS", 100, 101, 102)
        finally:
            client.close()
        with pytest.raises(
            ServiceUnavailableError, match=rf"{first.port}: slots 100-102 are served by no node"
        ):
            discover(cluster.config())


def test_a_cluster_has_only_db_0(redis_cluster: LocalCluster) -> None:
    with pytest.raises(BadInputError, match="only db 0"):
        discover(redis_cluster.config(db=2))
