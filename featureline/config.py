"""The resolved configuration: feature_store.yaml, then FEATURELINE_* variables and CLI
flags, each overriding a value only when it is set.

The user's Feast repo is the source of truth: its `online_store`, `registry` and
`offline_store` say where everything is, as they do for Feast. A FEATURELINE_*
variable (or a flag) replaces one value when it is set, never by being left at its
default. Every value records where it came from (`featureline config` prints it).

Pure logic (yaml, dataclasses): no feast, no redis-py, no kafka-python. Connections
are opened by featureline.online_store from what is resolved here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError
from featureline.kafka_config import KafkaConfig, kafka_config, resolve_kafka, stream_bootstrap
from featureline.repo import read_store_yaml
from featureline.settings import Settings

# Kafka lives in featureline.kafka_config; these names are re-exported for callers.
__all__ = [
    "MASK", "SUPPORTED_ONLINE_STORES", "KafkaConfig", "RedisConfig", "RegistryConfig", "StoreConfig",
    "kafka_config", "mask_url", "online_store", "parse_connection_string", "resolve", "stream_bootstrap",
]  # fmt: skip

SUPPORTED_ONLINE_STORES = ("redis",)
REDIS_TYPES = ("redis", "redis_cluster", "redis_sentinel")
# Feast's connection_string options that Featureline applies; anything else is refused
# by name (Feast would pass it to redis-py unchecked).
REDIS_OPTIONS = (
    "password", "username", "db", "ssl", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile",
    "ssl_cert_reqs", "ssl_check_hostname",
)  # fmt: skip
MASK = "******"

DEFAULT = "default"
YAML = "feature_store.yaml"


@dataclass(frozen=True)
class RedisConfig:
    """Where the online store is and how to log in. Picklable (serve and stream workers)."""

    host: str = "127.0.0.1"
    port: int = 6379
    password: str = field(default="", repr=False)
    username: str = ""
    db: int = 0
    ssl: bool = False
    ssl_ca_certs: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    redis_type: str = "redis"
    sentinel_master: str = "mymaster"
    key_ttl_seconds: int | None = None
    nodes: tuple[tuple[str, int], ...] = ()
    # WAIT after the stream job's writes (online_store.redis.durability); env only:
    # Feast's online_store config refuses keys it does not know.
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def key_ttl_s(self) -> int:
        """Feast's key_ttl_seconds: EXPIRE set on every key a latest-value write
        touches (0: keys do not expire)."""
        return self.key_ttl_seconds or 0

    def require_supported(self) -> RedisConfig:
        """What every redis_type needs before anything connects (a clear error here, not a
        failed connect later): a cluster has only db 0 (as Redis Cluster itself)."""
        if self.redis_type == "redis_cluster" and self.db:
            raise BadInputError(
                f"online_store redis_type: redis_cluster ({self.address}): db {self.db} is "
                "not possible on Redis Cluster (only db 0); remove db= from the connection_string"
            )
        return self

    def require_single_node(self) -> RedisConfig:
        """For the one-node clients (online_store.redis.connect, aio): a cluster or a
        Sentinel config reaching them is a bug of ours, said plainly."""
        if self.redis_type != "redis":
            raise BadInputError(
                f"online_store redis_type: {self.redis_type} ({self.address}) needs its own "
                "adapter (featureline.online_store.open_store/open_reader), not a one-node client"
            )
        return self


@dataclass(frozen=True)
class RegistryConfig:
    registry_type: str  # "file" or "sql"
    path: str  # an absolute file path, or a SQLAlchemy URL

    @property
    def display(self) -> str:
        return mask_url(self.path) if self.registry_type == "sql" else self.path


@dataclass(frozen=True)
class StoreConfig:
    """Everything resolved, with the origin of each value (dotted name -> origin)."""

    project: str
    repo: Path
    online_store_type: str
    redis: RedisConfig
    registry: RegistryConfig
    offline_store_type: str
    offline_dir: Path
    kafka: KafkaConfig
    http_port: int
    grpc_port: int
    entity_key_serialization_version: int
    origins: dict[str, str] = field(default_factory=dict)

    def online(self) -> RedisConfig:
        """The online store to connect to; a clear error when the repo names one
        Featureline cannot write (only commands that need it call this)."""
        if self.online_store_type not in SUPPORTED_ONLINE_STORES:
            raise BadInputError(
                f"feature_store.yaml names online_store type {self.online_store_type!r} "
                f"({self.origins.get('online_store.type', YAML)}); Featureline supports: "
                f"{', '.join(SUPPORTED_ONLINE_STORES)}"
            )
        return self.redis.require_supported()

    def rows(self) -> list[tuple[str, str, str]]:
        """(name, value, origin) for `featureline config`; passwords masked."""
        r, k = self.redis, self.kafka
        values: list[tuple[str, object]] = [
            ("project", self.project),
            ("repo", self.repo),
            ("online_store.type", self.online_store_type),
            ("online_store.redis_type", r.redis_type),
            ("online_store.host", r.host),
            ("online_store.port", r.port),
            ("online_store.db", r.db),
            ("online_store.username", r.username),
            ("online_store.password", MASK if r.password else ""),
            ("online_store.ssl", r.ssl),
            ("online_store.ssl_ca_certs", r.ssl_ca_certs),
            ("online_store.key_ttl_seconds", r.key_ttl_seconds),
            ("online_store.wait_replicas", r.wait_replicas),
            ("online_store.wait_timeout_ms", r.wait_timeout_ms),
            ("registry.registry_type", self.registry.registry_type),
            ("registry.path", self.registry.display),
            ("offline_store.type", self.offline_store_type),
            ("offline_store.dir", self.offline_dir),
            ("kafka.bootstrap_override", k.bootstrap_override),
            ("kafka.security_protocol", k.security_protocol),
            ("kafka.sasl_mechanism", k.sasl_mechanism),
            ("kafka.username", k.username),
            ("kafka.password", MASK if k.password else ""),
            ("kafka.ssl_cafile", k.ssl_cafile),
            ("serve.http_port", self.http_port),
            ("serve.grpc_port", self.grpc_port),
            ("entity_key_serialization_version", self.entity_key_serialization_version),
        ]
        if r.redis_type == "redis_sentinel":
            values.insert(4, ("online_store.sentinel_master", r.sentinel_master))
        if r.redis_type != "redis":  # the cluster's seeds or the sentinels
            nodes = ",".join(f"{h}:{p}" for h, p in r.nodes or [(r.host, r.port)])
            values.insert(4, ("online_store.nodes", nodes))
        if self.online_store_type != "redis":  # Redis values would describe nothing
            values = [(n, v) for n, v in values if not n.startswith("online_store.") or n.endswith(".type")]
        return [
            (name, "" if value is None else str(value), self.origins.get(name, DEFAULT))
            for name, value in values
        ]

    def to_json(self) -> str:
        return json.dumps(
            {name: {"value": value, "origin": origin} for name, value, origin in self.rows()}, indent=2
        )


def mask_url(url: str) -> str:
    """`scheme://user:secret@host/db` -> `scheme://user:******@host/db`."""
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in creds:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:{MASK}@{host}"


# --- online store --------------------------------------------------------------------


def parse_connection_string(text: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Feast's `_parse_connection_string` (feast/infra/online_stores/redis.py): comma
    separated; items without '=' are host:port nodes, items with it are options whose
    values are JSON-decoded when they parse (`ssl=true` -> True, `db=3` -> 3), else
    kept as text. A node without a port, or an unknown option, is a clear error here
    (Feast would fail later with a KeyError, or pass it to redis-py unchecked)."""
    nodes: list[tuple[str, int]] = []
    options: dict[str, Any] = {}
    for item in text.split(","):
        if "=" in item:
            key, raw = item.split("=", 1)
            try:
                options[key] = json.loads(raw)
            except json.JSONDecodeError:
                options[key] = raw
            continue
        host, _, port = item.partition(":")
        if not port.strip().isdigit():
            raise BadInputError(
                f"online_store connection_string: {item!r} is not host:port "
                "(format: host:port[,host2:port2],password=...,db=N,ssl=true)"
            )
        nodes.append((host.strip(), int(port)))
    if not nodes:
        raise BadInputError(f"online_store connection_string {text!r} names no host:port")
    unknown = sorted(set(options) - set(REDIS_OPTIONS) - {"skip_full_coverage_check"})
    if unknown:
        raise BadInputError(
            f"online_store connection_string: option(s) {', '.join(unknown)} are not supported "
            f"(supported: {', '.join(REDIS_OPTIONS)})"
        )
    return nodes, options


def truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _redis_from_yaml(online: Mapping[str, Any], origins: dict[str, str]) -> dict[str, Any]:
    """The yaml's redis values (only those it sets), recording their origin."""
    out: dict[str, Any] = {}
    conn = online.get("connection_string")
    if conn is not None:
        nodes, options = parse_connection_string(str(conn))
        out["host"], out["port"] = nodes[0]
        out["nodes"] = tuple(nodes)
        for key, value in options.items():
            if key in REDIS_OPTIONS:
                out[key] = value
        for key in ("host", "port", "nodes", *options):
            origins[f"online_store.{key}"] = f"{YAML} (online_store.connection_string)"
    for key in ("redis_type", "sentinel_master", "key_ttl_seconds"):
        if online.get(key) is not None:
            out[key] = online[key]
            origins[f"online_store.{key}"] = f"{YAML} (online_store.{key})"
    return out


# Settings field -> RedisConfig field (FEATURELINE_REDIS_HOST overrides `host`, ...).
_REDIS_ENV = {
    "redis_host": "host", "redis_port": "port", "redis_password": "password",
    "redis_username": "username", "redis_db": "db", "redis_ssl": "ssl",
    "redis_ssl_ca_certs": "ssl_ca_certs", "redis_wait_replicas": "wait_replicas",
    "redis_wait_timeout_ms": "wait_timeout_ms", "redis_type": "redis_type",
}  # fmt: skip


def _coerce_redis(values: dict[str, Any]) -> RedisConfig:
    redis_type = str(values.get("redis_type", "redis"))
    if redis_type not in REDIS_TYPES:
        raise BadInputError(
            f"online_store redis_type {redis_type!r} is unknown (Feast's: {', '.join(REDIS_TYPES)})"
        )
    try:
        ttl = values.get("key_ttl_seconds")
        return RedisConfig(
            host=str(values.get("host", "127.0.0.1")),
            port=int(values.get("port", 6379)),
            password=str(values.get("password") or ""),
            username=str(values.get("username") or ""),
            db=int(values.get("db") or 0),
            ssl=truthy(values.get("ssl", False)),
            ssl_ca_certs=str(values.get("ssl_ca_certs") or ""),
            ssl_certfile=str(values.get("ssl_certfile") or ""),
            ssl_keyfile=str(values.get("ssl_keyfile") or ""),
            ssl_cert_reqs=str(values.get("ssl_cert_reqs") or "required"),
            ssl_check_hostname=truthy(values.get("ssl_check_hostname", True)),
            redis_type=redis_type,
            sentinel_master=str(values.get("sentinel_master", "mymaster")),
            key_ttl_seconds=None if ttl in (None, "", 0) else int(ttl),
            nodes=tuple(values.get("nodes", ())),
            wait_replicas=int(values.get("wait_replicas", 0)),
            wait_timeout_ms=int(values.get("wait_timeout_ms", 1000)),
        )
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"online_store: {exc}") from None


def resolve_redis(online: Mapping[str, Any], settings: Settings, origins: dict[str, str]) -> RedisConfig:
    values = _redis_from_yaml(online, origins)
    for name, key in _REDIS_ENV.items():
        if settings.is_set(name):
            values[key] = getattr(settings, name)
            origins[f"online_store.{key}"] = settings.origin(name)
    if settings.is_set("redis_nodes"):
        values.update(_env_nodes(settings, origins))
    elif settings.is_set("redis_host") or settings.is_set("redis_port"):
        values["nodes"] = ((str(values.get("host", "127.0.0.1")), int(values.get("port", 6379))),)
    return _coerce_redis(values)


def _env_nodes(settings: Settings, origins: dict[str, str]) -> dict[str, Any]:
    """FEATURELINE_REDIS_NODES: the nodes of a connection_string, its first one the
    host:port. Options stay out (each has its own FEATURELINE_REDIS_* variable, and a
    password in a node list would show in `docker inspect` and `kubectl describe`)."""
    raw = settings.redis_nodes
    if settings.is_set("redis_host") or settings.is_set("redis_port"):
        raise BadInputError(
            f"FEATURELINE_REDIS_NODES={raw!r} and FEATURELINE_REDIS_HOST/PORT are both set: "
            "NODES names every node (the first is the host:port); unset HOST and PORT"
        )
    try:
        nodes, options = parse_connection_string(raw)
    except BadInputError as exc:
        raise BadInputError(f"FEATURELINE_REDIS_NODES={raw!r}: {exc}") from None
    if options:
        raise BadInputError(
            f"FEATURELINE_REDIS_NODES={raw!r}: only host:port items; set {', '.join(sorted(options))} "
            "with FEATURELINE_REDIS_* variables or in the yaml's connection_string"
        )
    for key in ("host", "port", "nodes"):
        origins[f"online_store.{key}"] = settings.origin("redis_nodes")
    return {"host": nodes[0][0], "port": nodes[0][1], "nodes": tuple(nodes)}


# --- registry, offline store --------------------------------------------------------


def resolve_registry(raw: object, repo: Path, settings: Settings, origins: dict[str, str]) -> RegistryConfig:
    """Feast's forms: a path string (a file registry, relative to the repo) or a
    mapping with registry_type file or sql. FEATURELINE_REGISTRY_URL overrides."""
    if settings.is_set("registry_url"):
        origins["registry.path"] = origins["registry.registry_type"] = settings.origin("registry_url")
        return _registry_of(settings.registry_url, repo)
    if raw is None:  # Feast's default
        raw = "data/registry.db"
        origins["registry.path"] = origins["registry.registry_type"] = "default (Feast's data/registry.db)"
    else:
        origins["registry.path"] = origins["registry.registry_type"] = f"{YAML} (registry)"
    if isinstance(raw, str):
        return RegistryConfig("file", str(_under(repo, raw)))
    if isinstance(raw, Mapping):
        kind = str(raw.get("registry_type", "file"))
        path = str(raw.get("path", ""))
        if kind == "sql":
            return RegistryConfig("sql", path)
        if kind == "file":
            return RegistryConfig("file", path if "://" in path else str(_under(repo, path)))
        raise BadInputError(f"registry_type {kind!r} is not supported (supported: file, sql)")
    raise BadInputError(f"feature_store.yaml: `registry` must be a path or a mapping, not {raw!r}")


def _registry_of(url: str, repo: Path) -> RegistryConfig:
    """A SQLAlchemy URL is a SQL registry; anything else a registry file."""
    if "://" in url and not url.startswith(("s3://", "gs://", "file://")):
        return RegistryConfig("sql", url)
    return RegistryConfig("file", url if "://" in url else str(_under(repo, url)))


def _under(repo: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (repo / p).resolve()


# --- all of it -----------------------------------------------------------------------


def resolve(settings: Settings, store_yaml: Mapping[str, Any] | None = None) -> StoreConfig:
    """The configuration of `settings.repo`: its feature_store.yaml (read here unless
    given; absent when only a specs file is deployed) under FEATURELINE_* and flags."""
    repo = settings.repo.resolve()
    if store_yaml is None:
        store_yaml = read_yaml(settings)
    origins: dict[str, str] = {"repo": settings.origin("repo")}
    online = store_yaml.get("online_store") or {}
    if isinstance(online, str):  # Feast allows `online_store: redis`
        online = {"type": online}
    if store_yaml:
        online_type = str(online.get("type", "sqlite"))
        origins["online_store.type"] = (
            f"{YAML} (online_store.type)" if "type" in online else "default (Feast's sqlite)"
        )
    else:  # a specs file without its repo: Redis from FEATURELINE_REDIS_* or the defaults
        online_type = "redis"
        origins["online_store.type"] = "default (no feature_store.yaml, FEATURELINE_SPECS_FILE)"
    redis = resolve_redis(online if online_type == "redis" else {}, settings, origins)
    offline = store_yaml.get("offline_store") or {}
    offline_type = str((offline if isinstance(offline, Mapping) else {"type": offline}).get("type", "dask"))
    origins["offline_store.type"] = f"{YAML} (offline_store.type)" if offline else "default (Feast's dask)"
    origins["offline_store.dir"] = settings.origin("offline_dir")
    for port in ("http_port", "grpc_port"):
        origins[f"serve.{port}"] = settings.origin(port)
    if "project" in store_yaml:
        origins["project"] = f"{YAML} (project)"
    version = int(store_yaml.get("entity_key_serialization_version", 3))
    if "entity_key_serialization_version" in store_yaml:
        origins["entity_key_serialization_version"] = f"{YAML} (entity_key_serialization_version)"
    return StoreConfig(
        project=str(store_yaml.get("project", "")),
        repo=repo,
        online_store_type=online_type,
        redis=redis,
        registry=resolve_registry(store_yaml.get("registry"), repo, settings, origins),
        offline_store_type=offline_type,
        offline_dir=settings.resolved_offline_dir,
        kafka=resolve_kafka(settings, origins),
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        entity_key_serialization_version=version,
        origins=origins,
    )


def read_yaml(settings: Settings) -> dict[str, Any]:
    """feature_store.yaml with ${VAR} expanded as Feast does, after exporting the
    settings (the demo repo's yaml names ${FEATURELINE_REDIS_ADDR}); {} when a specs
    file stands in for a repo that is not deployed."""
    settings.export_env()
    if settings.specs_file and not (settings.repo / "feature_store.yaml").is_file():
        return {}
    if not (settings.repo / "feature_store.yaml").is_file():
        raise BadInputError(
            f"{str(settings.repo)!r} is not a Feast repo: it has no feature_store.yaml (use --repo DIR)"
        )
    return read_store_yaml(settings.repo)


def online_store(settings: Settings) -> RedisConfig:
    """The Redis to connect to, for commands that need the online store."""
    return resolve(settings).online()
