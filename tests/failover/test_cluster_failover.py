"""A Redis Cluster failover under load: the same run as the Sentinel one (failover_run)
on a `redis_type: redis_cluster` repo and a cluster of its own (3 primaries, 1 replica
each, node timeout 1 s): one primary is SIGKILLed and the cluster promotes its replica;
the stream job (WAIT per primary) and serve (slot routing; near cache off, the default) recover without
a restart, no answer in between is wrong, and the result equals the naive oracle."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from failover_helpers import failover_case
from failover_run import Target, run_failover
from redis.cluster import ClusterNode, RedisCluster
from redis_cluster_helpers import LocalCluster, running_cluster

from featureline.cli.devstack.processes import spawn
from featureline.cli.devstack.redis_cluster import NodeProcess

pytestmark = [pytest.mark.beam, pytest.mark.slow]


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    """A cluster for this test alone: it kills a node."""
    with running_cluster(tmp_path / "cluster") as cluster:
        yield cluster


def _online_yaml(cluster: LocalCluster) -> str:
    return (
        "online_store:\n  type: redis\n  redis_type: redis_cluster\n"
        f'  connection_string: "{cluster.connection_string}"\n'
    )


def _cluster_target(cluster: LocalCluster) -> Target:
    victim = cluster.primaries()[0]
    live = next(n.port for n in cluster.nodes if n.port not in (victim, *_replicas_of(cluster, victim)))

    def restart() -> None:
        """The killed node again, with its nodes.conf: it rejoins as a replica of the
        node promoted in its place."""
        old = cluster.node(victim)
        pid = spawn(old.argv, Path(old.log), cwd=Path(old.argv[old.argv.index("--dir") + 1]))
        index = cluster.nodes.index(old)
        cluster.nodes[index] = NodeProcess(pid, old.host, old.port, old.binary, old.log, old.argv)

    def get(key: bytes) -> bytes | None:
        client = RedisCluster(startup_nodes=[ClusterNode(cluster.host, live)], socket_timeout=2.0)
        try:
            value: Any = client.get(key)
            return None if value is None else bytes(value)
        finally:
            client.close()

    return Target(
        kill=lambda: cluster.kill(victim),
        wait_promoted=lambda: cluster.wait_promoted(victim, seen_from=live),
        restart=restart,
        get=get,
    )


def _replicas_of(cluster: LocalCluster, primary: int) -> list[int]:
    for entry in cluster.slots():
        if int(entry[2][1]) == primary:
            return [int(r[1]) for r in entry[3:]]
    return []


def test_cluster_failover_loses_nothing_and_serves_no_wrong_value(
    stack: Any, own_cluster: LocalCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = failover_case(stack, tmp_path, _online_yaml(own_cluster), monkeypatch)
    run_failover(case, tmp_path, _cluster_target(own_cluster), near_cache=False)
