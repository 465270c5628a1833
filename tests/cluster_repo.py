"""A test repo's online store moved onto a Redis Cluster, as a Feast user configures it:
`redis_type: redis_cluster` and every node in the connection_string (Feast's form), so
Feast's SDK and every `featureline` command read the same yaml; and redis-py clients
of either kind for what tests do beside the product."""

from __future__ import annotations

import dataclasses
from typing import Any

from featureline.config import RedisConfig
from featureline.settings import Settings

# The online_store block of the demo repo and of the serving tests' repo.
ONE_NODE = "  type: redis\n  connection_string: ${FEATURELINE_REDIS_ADDR}\n"


def cluster_yaml(text: str, connection_string: str) -> str:
    """feature_store.yaml `text` with its one-node online store replaced by the cluster."""
    assert ONE_NODE in text, "the repo's online_store block changed"
    cluster = f'  type: redis\n  redis_type: redis_cluster\n  connection_string: "{connection_string}"\n'
    return text.replace(ONE_NODE, cluster)


def on_cluster(settings: Settings, cluster: Any) -> Settings:
    """`settings` with its repo's yaml (rewritten in place) naming `cluster` (a
    redis_cluster_helpers.LocalCluster). FEATURELINE_REDIS_HOST/PORT are unset: they
    would replace the yaml's node list with one seed."""
    yaml = settings.repo / "feature_store.yaml"
    yaml.write_text(cluster_yaml(yaml.read_text(), cluster.connection_string))
    defaults = Settings()
    origins = {k: v for k, v in settings.origins.items() if k not in ("redis_host", "redis_port")}
    return dataclasses.replace(
        settings, redis_host=defaults.redis_host, redis_port=defaults.redis_port, origins=origins
    )


def raw_client(cfg: RedisConfig) -> Any:
    """redis-py's client of `cfg` (one node, or its cluster client routing by slot), for
    what tests do beside the product: flush, write tile hashes, look at keys and marks."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    if cfg.redis_type == "redis_cluster":
        return RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in cfg.nodes or [(cfg.host, cfg.port)]])
    return redis.Redis(host=cfg.host, port=cfg.port, db=cfg.db)


def flush_all(client: Any) -> None:
    """FLUSHDB on one node, or on every primary of a cluster."""
    from redis.cluster import RedisCluster

    if isinstance(client, RedisCluster):
        client.flushdb(target_nodes=RedisCluster.PRIMARIES)
    else:
        client.flushdb()


def keys_per_primary(client: Any) -> list[int]:
    """DBSIZE of each primary of a cluster client (one entry for a one-node client): a
    cluster test asserts its keys did spread, so it cannot pass on one node's slots."""
    from redis.cluster import RedisCluster

    if not isinstance(client, RedisCluster):
        return [int(client.dbsize())]
    return [int(client.get_redis_connection(node).dbsize()) for node in client.get_primaries()]
