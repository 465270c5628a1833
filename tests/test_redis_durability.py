"""WAIT against a real primary and replica: acknowledged, timed out with the replica
hung (SIGSTOP), and the settings that turn it on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis
from redis_sentinel_helpers import eventually, sentinel_setup_fixture  # noqa: F401 (registers the fixture)

from featureline.cli.devstack import free_ports
from featureline.cli.devstack.redis_sentinel import SentinelSetup
from featureline.config import resolve
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.online_store.redis.durability import wait_for_replicas, wait_if_configured
from featureline.online_store.redis.sentinel import sentinel_client
from featureline.settings import Settings


def test_a_write_and_wait_1_is_acknowledged(sentinel_setup: SentinelSetup) -> None:
    primary = sentinel_setup.data_client(sentinel_setup.primary, socket_timeout=5.0)
    primary.hset("durable:k", "f", b"1")
    assert wait_for_replicas(primary, 1, 1000) == 1
    replica = sentinel_setup.data_client(sentinel_setup.replica)
    assert replica.hget("durable:k", "f") == b"1"  # WAIT returned: the replica has it
    # Through the Sentinel-managed client too (its pool names the primary in errors).
    managed = sentinel_client(sentinel_setup.redis_config(), socket_timeout=5.0)
    assert wait_for_replicas(managed, 1, 1000) == 1
    for client in (primary, replica, managed):
        client.close()


def test_a_hung_replica_times_out_and_raises(sentinel_setup: SentinelSetup) -> None:
    primary = sentinel_setup.data_client(sentinel_setup.primary, socket_timeout=5.0)
    primary.set("durable:before", b"x")
    sentinel_setup.pause(sentinel_setup.replica)
    try:
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError) as err:
            wait_for_replicas(primary, 1, 300)
        elapsed = time.monotonic() - started
    finally:
        sentinel_setup.resume(sentinel_setup.replica)
    assert 0.25 <= elapsed < 2.0
    assert f"Redis at {sentinel_setup.primary.address}: only 0 of 1 replica(s)" in str(err.value)
    assert "not committed" in str(err.value)

    def acknowledged() -> int | None:
        try:
            return wait_for_replicas(primary, 1, 200) or None
        except ServiceUnavailableError:
            return None

    assert eventually(acknowledged, 20, "the resumed replica to acknowledge") == 1
    primary.close()


def test_off_means_no_round_trip_and_a_zero_timeout_is_refused() -> None:
    (dead,) = free_ports(1)
    nowhere = redis.Redis(port=dead, socket_connect_timeout=0.2)
    assert wait_for_replicas(nowhere, 0, 1000) == 0  # a round trip would fail to connect
    with pytest.raises(BadInputError, match="must be > 0"):  # WAIT n 0 would block forever
        wait_for_replicas(nowhere, 1, 0)


def test_a_lost_primary_is_unavailable_not_acknowledged() -> None:
    (dead,) = free_ports(1)
    nowhere = redis.Redis(port=dead, socket_connect_timeout=0.2, retry=None)
    with pytest.raises(
        ServiceUnavailableError, match=f"Redis at localhost:{dead}: the replica acknowledgement"
    ):
        wait_for_replicas(nowhere, 1, 100)


def test_settings_turn_it_on(tmp_path: Path, sentinel_setup: SentinelSetup) -> None:
    env = {
        "FEATURELINE_REPO": str(tmp_path),
        "FEATURELINE_REDIS_WAIT_REPLICAS": "1",
        "FEATURELINE_REDIS_WAIT_TIMEOUT_MS": "250",
    }
    cfg = resolve(Settings.from_env(env), {"online_store": {"type": "redis"}})
    assert (cfg.redis.wait_replicas, cfg.redis.wait_timeout_ms) == (1, 250)
    origins = {name: origin for name, _, origin in cfg.rows()}
    assert origins["online_store.wait_replicas"] == "env FEATURELINE_REDIS_WAIT_REPLICAS"
    default = resolve(
        Settings.from_env({"FEATURELINE_REPO": str(tmp_path)}), {"online_store": {"type": "redis"}}
    )
    assert (default.redis.wait_replicas, default.redis.wait_timeout_ms) == (0, 1000)  # off, as Feast
    primary = sentinel_setup.data_client(sentinel_setup.primary, socket_timeout=5.0)
    assert wait_if_configured(primary, cfg.redis) == 1
    assert wait_if_configured(primary, default.redis) == 0
    primary.close()
