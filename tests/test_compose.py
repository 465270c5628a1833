"""docker-compose.yml is valid and every Featureline service runs a real subcommand;
the Redis Cluster and Sentinel overrides (deploy/compose/redis-*.yml) are valid on top of
it and point every Featureline service at the nodes they start.

No Docker engine runs here: `docker-compose config` (Debian's docker-compose, installed
by `make install`) validates and merges the files without one. Nothing here starts a
container: the overrides' shell steps (cluster creation, sentinel config) have not run.
"""

from __future__ import annotations

import copy
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import featureline_argv_error, redis_of_env, token_problems, unknown_env_vars

from featureline.config import RedisConfig

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = "deploy/compose/redis-cluster.yml"
SENTINEL = "deploy/compose/redis-sentinel.yml"
MONITORING = "deploy/compose/monitoring.yml"
VARIANTS = [(), (CLUSTER,), (SENTINEL,), (MONITORING,)]
_IDS = ["one-node", "redis-cluster", "redis-sentinel", "monitoring"]


@cache
def _merged(overrides: tuple[str, ...]) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is not installed: run `make install` (it installs Debian's docker-compose)"
    files = [arg for name in ("docker-compose.yml", *overrides) for arg in ("-f", str(ROOT / name))]
    proc = subprocess.run([exe, *files, "config"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


def _config(*overrides: str) -> dict[str, Any]:
    return copy.deepcopy(_merged(overrides))


def test_compose_file_is_valid_and_complete() -> None:
    services = _config()["services"]
    for name in ("kafka", "redis", "postgres", "serving", "streaming", "batch"):
        assert name in services, f"compose has no {name} service"
    assert services["kafka"]["image"].startswith("apache/kafka")
    assert "KAFKA_PROCESS_ROLES" in services["kafka"]["environment"]  # KRaft, no ZooKeeper
    assert services["apply"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert (ROOT / "deploy" / "Dockerfile").is_file()


def _featureline_services(*overrides: str) -> list[tuple[str, list[str]]]:
    services = _config(*overrides)["services"]
    return [
        (name, list(svc["command"]))
        for name, svc in services.items()
        if svc.get("image", "").startswith("featureline")
    ]


@pytest.mark.parametrize("index", range(6))
def test_every_service_command_is_a_real_subcommand(index: int) -> None:
    found = _featureline_services()
    assert len(found) == 6, [n for n, _ in found]
    name, argv = found[index]
    error = featureline_argv_error(argv)
    assert error is None, f"service {name}: {error}"


@pytest.mark.parametrize("overrides", VARIANTS, ids=_IDS)
def test_every_environment_variable_is_one_the_code_reads(overrides: tuple[str, ...]) -> None:
    services = _config(*overrides)["services"]
    names = {
        n
        for svc in services.values()
        if svc.get("image", "").startswith("featureline")
        for n in svc["environment"]
    }
    assert "FEATURELINE_AUTH_TOKENS_FILE" in names and "FEATURELINE_OFFLINE_DIR" in names
    assert unknown_env_vars(names) == []


def test_the_serving_tokens_grant_the_demo() -> None:
    secret = _config()["secrets"]["serving_tokens"]["file"]
    assert token_problems(Path(secret).read_text()) == []


def test_long_running_services_are_checked_on_their_real_endpoints() -> None:
    services = _config()["services"]
    serving, streaming = services["serving"], services["streaming"]
    assert "http://127.0.0.1:8080/health" in " ".join(serving["healthcheck"]["test"])
    port = streaming["command"][streaming["command"].index("--metrics-port") + 1]
    assert f"http://127.0.0.1:{port}/metrics" in " ".join(streaming["healthcheck"]["test"])
    for svc in (serving, streaming):
        assert svc["read_only"] is True
        assert any(t.startswith("/tmp") for t in svc["tmpfs"])
        assert any(t.startswith(svc["environment"]["FEATURELINE_HOME"]) for t in svc["tmpfs"])


# --- the Redis Cluster and Sentinel overrides ------------------------------------------


@pytest.mark.parametrize("overrides", VARIANTS[1:3], ids=_IDS[1:3])
def test_an_override_keeps_every_featureline_command(overrides: tuple[str, ...]) -> None:
    assert _featureline_services(*overrides) == _featureline_services()


def _command(svc: dict[str, Any]) -> str:
    command = svc.get("command", [])
    return command if isinstance(command, str) else " ".join(command)


def _reaches(overrides: tuple[str, ...], dependencies: dict[str, str]) -> dict[str, RedisConfig]:
    """The online store of each Featureline service, after checking that exactly those
    that wait for the one-node `redis` in the base file wait for `dependencies` too
    (name -> condition)."""
    base = _config()["services"]
    services = _config(*overrides)["services"]
    found: dict[str, RedisConfig] = {}
    for name, _ in _featureline_services(*overrides):
        waits = services[name].get("depends_on", {})
        wanted = {d: {"condition": c} for d, c in dependencies.items()}
        got = {d: waits[d] for d in dependencies if d in waits}
        assert got == (wanted if "redis" in base[name].get("depends_on", {}) else {}), name
        found[name] = redis_of_env(services[name]["environment"])
    assert len(found) == 6
    return found


def test_the_cluster_override_starts_a_cluster_and_points_featureline_at_it() -> None:
    services = _config(CLUSTER)["services"]
    nodes = {n: s for n, s in services.items() if "--cluster-enabled yes" in _command(s)}
    assert len(nodes) == 6  # 3 primaries with a replica each
    for name, svc in nodes.items():
        assert svc["image"] == "redis:7.4" and svc["hostname"] == name, name
        # The slot map names each node by the name its service resolves as (Redis 7).
        assert '--cluster-announce-hostname "$$HOSTNAME"' in _command(svc), name
        assert "--cluster-preferred-endpoint-type hostname" in _command(svc), name
        assert "--port 6379" in _command(svc) and svc["healthcheck"]["test"][1:] == ["redis-cli", "ping"]
    create = services["redis-cluster-create"]
    script = _command(create)
    assert "redis-cli --cluster create" in script and "--cluster-replicas 1 --cluster-yes" in script
    assert all(name in script for name in nodes) and "cluster_state:ok" in script
    assert create["depends_on"] == {n: {"condition": "service_healthy"} for n in nodes}
    expected = tuple((name, 6379) for name in sorted(nodes))
    for name, cfg in _reaches((CLUSTER,), {"redis-cluster-create": "service_completed_successfully"}).items():
        assert (cfg.redis_type, cfg.nodes) == ("redis_cluster", expected), name


def test_the_sentinel_override_starts_sentinels_and_points_featureline_at_them() -> None:
    services = _config(SENTINEL)["services"]
    sentinels = {n: s for n, s in services.items() if "--sentinel" in _command(s)}
    assert len(sentinels) == 3
    master = RedisConfig().sentinel_master  # Feast's default, what the demo yaml leaves
    for name, svc in sentinels.items():
        script = _command(svc)
        assert f"sentinel monitor {master} redis-primary 6379 2" in script, name  # quorum 2 of 3
        assert "sentinel resolve-hostnames yes" in script and "sentinel announce-hostnames yes" in script
        assert svc["hostname"] == name and "sentinel announce-ip $$HOSTNAME" in script
    replica = services["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :] == ["redis-primary", "6379"]
    for node in ("redis-primary", "redis-replica"):
        command = services[node]["command"]
        assert command[command.index("--replica-announce-ip") + 1] == node
    expected = tuple((name, 26379) for name in sorted(sentinels))
    ready = dict.fromkeys(sentinels, "service_healthy")
    for name, cfg in _reaches((SENTINEL,), ready).items():
        assert (cfg.redis_type, cfg.nodes, cfg.sentinel_master) == ("redis_sentinel", expected, master), name


def test_the_stream_job_scales_as_a_consumer_group() -> None:
    """`docker compose up --scale streaming=N` must share the partitions: static mode
    would have every container read every partition."""
    command = _config()["services"]["streaming"]["command"]
    assert command[command.index("--group-mode") + 1] == "dynamic"
    assert "--shard" not in command and "--instance-id" not in command  # one value for all replicas
    assert "ports" not in _config()["services"]["streaming"]  # a host port would refuse a second replica


def test_the_monitoring_override_mounts_the_shipped_rules_and_dashboard() -> None:
    services = _config(MONITORING)["services"]
    mounts = {
        name: [str(v).split(":")[0] for v in services[name]["volumes"]] for name in ("prometheus", "grafana")
    }
    for name, sources in mounts.items():
        for source in sources:
            assert Path(source).exists(), f"{name} mounts {source}, which is not in the checkout"
    assert any(s.endswith("deploy/monitoring/alerts.yml") for s in mounts["prometheus"])
    assert any(s.endswith("deploy/monitoring/grafana-dashboard.json") for s in mounts["grafana"])
    # It adds the UI (drift metrics for Prometheus) and keeps every other command.
    added = dict(_featureline_services(MONITORING))
    assert added.pop("ui")[0] == "ui"
    assert sorted(added.items()) == sorted(_featureline_services())
    error = featureline_argv_error(services["ui"]["command"])
    assert error is None, error
