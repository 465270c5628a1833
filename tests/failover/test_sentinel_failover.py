"""A Sentinel failover under load: `featureline stream` (WAIT for 1 replica before it
commits) and `featureline serve` (near cache on) on a `redis_type: redis_sentinel`
repo; events flow at a steady rate and a reader records every REST and gRPC answer
while the primary is SIGKILLed and the sentinels promote the replica. Neither process
restarts; every answer in between is 503/UNAVAILABLE or some prefix's values
(failover_helpers); once every event is consumed, every aggregate and latest value
equals the naive oracle and every event is once offline (failover_run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from failover_helpers import failover_case
from failover_run import Target, run_failover
from redis_sentinel_helpers import eventually, fresh_sentinel_setup_fixture  # noqa: F401

from featureline.cli.devstack.redis_sentinel import SentinelSetup
from featureline.online_store.redis.sentinel import discover_primary

pytestmark = [pytest.mark.beam, pytest.mark.slow]


def _online_yaml(setup: SentinelSetup) -> str:
    return (
        "online_store:\n  type: redis\n  redis_type: redis_sentinel\n"
        f"  sentinel_master: {setup.master_name}\n"
        f'  connection_string: "{setup.connection_string()}"\n'
    )


def _sentinel_target(setup: SentinelSetup) -> Target:
    old = setup.primary

    def promoted() -> int | None:
        try:
            _, port = discover_primary(setup.redis_config())
        except Exception:  # no primary confirmed yet
            return None
        return port if port != old.port else None

    def get(key: bytes) -> bytes | None:
        _, port = discover_primary(setup.redis_config())
        node = next(n for n in setup.data_nodes if n.port == port)
        client = setup.data_client(node, socket_timeout=2.0)
        try:
            value: bytes | None = client.get(key)
            return value
        finally:
            client.close()

    return Target(
        kill=lambda: setup.kill(old),
        wait_promoted=lambda: eventually(promoted, 20, "the sentinels to promote the replica"),
        restart=lambda: setup.restart_as_replica(old, setup.replica),
        get=get,
    )


def test_sentinel_failover_loses_nothing_and_serves_no_wrong_value(
    stack: Any, fresh_sentinel_setup: SentinelSetup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    case = failover_case(stack, tmp_path, _online_yaml(fresh_sentinel_setup), monkeypatch)
    run_failover(case, tmp_path, _sentinel_target(fresh_sentinel_setup))
