"""`featureline dev up --redis-cluster`: a real local cluster through the CLI, its nodes
in `dev status`, and the resolved config that commands connect with."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from redis_cluster_helpers import free_port_run

from featureline.cli import main
from featureline.cli.devstack import load_state
from featureline.config import resolve
from featureline.online_store.redis.aio import RedisClient
from featureline.online_store.redis.cluster_aio import ClusterReader
from featureline.settings import Settings


@pytest.fixture
def cluster_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_settings: Callable[..., Settings]
) -> Iterator[Settings]:
    """FEATURELINE_* on a private home, the Redis port the first of 6 free ports."""
    settings = isolated_settings(tmp_path / "home", redis_port=free_port_run(6))
    for key, value in settings.env_vars().items():
        monkeypatch.setenv(key, value)
    yield settings
    main(["dev", "down"])


def test_up_status_down_a_redis_cluster(cluster_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    base = cluster_env.redis_port
    assert main(["dev", "up", "--redis-cluster"]) == 0
    out = capsys.readouterr().out
    assert f"3 primaries x 1 replicas on 127.0.0.1:{base}-{base + 5}" in out
    assert "export FEATURELINE_REDIS_TYPE=redis_cluster" in out
    assert f'connection_string: "127.0.0.1:{base},' in out
    state = load_state(cluster_env)
    assert state is not None and len(state.cluster_nodes()) == 6

    assert main(["dev", "status"]) == 0
    table = capsys.readouterr().out
    assert "CLUSTER NODE" in table and table.count(" primary ") == 3 and table.count("replica of") == 3
    assert "0-5460" in table and "10923-16383" in table
    assert main(["dev", "status", "--json"]) == 0
    nodes = json.loads(capsys.readouterr().out)["redis_cluster"]
    assert sorted(n["address"] for n in nodes) == sorted(f"127.0.0.1:{base + i}" for i in range(6))
    assert all(n["up"] for n in nodes)

    assert main(["dev", "up", "--redis-cluster"]) == 0  # idempotent: the same nodes
    assert "already running" in capsys.readouterr().out
    assert load_state(cluster_env) == state
    assert main(["dev", "up"]) == 2  # a single Redis on the cluster's ports: refused
    assert "run `featureline dev down` first" in capsys.readouterr().err

    # What commands connect with: FEATURELINE_REDIS_TYPE makes the seed a cluster seed.
    settings = dataclasses.replace(Settings.from_env({"FEATURELINE_REDIS_TYPE": "redis_cluster"}), **{
        "redis_port": base, "home": cluster_env.home, "specs_file": "x.json", "repo": cluster_env.home,
    })  # fmt: skip
    cfg = resolve(settings, {})
    assert (cfg.redis.redis_type, cfg.redis.nodes) == ("redis_cluster", (("127.0.0.1", base),))
    assert cfg.origins["online_store.redis_type"] == "env FEATURELINE_REDIS_TYPE"
    reader = ClusterReader.from_config(cfg.redis, RedisClient)
    assert len(reader.slot_map.primaries()) == 3

    async def ping() -> bool:
        try:
            return await reader.ping()
        finally:
            reader.close()  # in the loop its connections belong to

    assert asyncio.run(ping())

    assert main(["dev", "down"]) == 0
    assert capsys.readouterr().out.count("stopped") == 7  # 6 nodes and Tansu
    assert main(["dev", "status"]) == 1


def test_a_cluster_needs_three_primaries(cluster_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "up", "--redis-cluster", "--primaries", "2"]) == 2
    assert "at least 3 primaries" in capsys.readouterr().err
