"""Typed settings with stated defaults, read from FEATURELINE_* environment variables.

One frozen object; every command builds it once (`Settings.from_env()`), applies CLI
overrides with `with_flags` (or `dataclasses.replace`), and exports it to the
environment with `export_env()` so that Feast's `feature_store.yaml` (which may use
${FEATURELINE_*}) and child processes see the same values.

A setting overrides the repo's feature_store.yaml only when it is set (featureline.config):
`is_set(name)` is true for a variable present in the environment, a flag, or a value a
caller passed that differs from the default. A value exported only so that a yaml can
expand it (FEATURELINE_REGISTRY_URL's default) is listed in FEATURELINE_DEFAULTED, so a
child process does not mistake it for one the user set.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from featureline.errors import BadInputError

DEFAULT_REPO = Path("feature_repo")


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with its default. Env var = FEATURELINE_<FIELD NAME UPPER>."""

    repo: Path = DEFAULT_REPO
    # Working directory of the embedded dev stack: pids, logs, registry, offline store.
    home: Path = Path(".featureline")
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    # Empty means: the SQLite SQL registry at <home>/registry.db.
    registry_url: str = ""
    # Empty means: <repo>/data/offline (what the demo repo's sources.py uses too).
    offline_dir: str = ""
    http_port: int = 8080
    grpc_port: int = 6566
    # What serves the gRPC port (`featureline serve --grpc-server`): "native" (our HTTP/2
    # server in the worker's event loop) or "aio" (grpcio's, I/O on its own thread).
    grpc_server: str = "native"
    # Tiles are kept at least w + s after their window can need them (semantics.md 2);
    # this extra margin absorbs late events and clock skew.
    tile_retention_margin_s: int = 3600
    # A RepoSpec JSON (`featureline specs --json > FILE`) used instead of parsing the
    # repo with Feast: for serving and GPU-worker images that do not install Feast
    # (~5 s to import and ~300 MB of dependencies). Empty: parse the repo (cached).
    specs_file: str = ""
    # Online store overrides (featureline.config): each replaces one value of the
    # yaml's connection_string when set. redis_ssl: "true"/"false"; "" = not set.
    redis_password: str = field(default="", repr=False)
    redis_username: str = ""
    redis_db: int = 0
    redis_ssl: str = ""
    redis_ssl_ca_certs: str = ""
    # Replicas that must acknowledge the stream job's writes before it commits offsets
    # (featureline.online_store.redis.durability): 0 = off, as Feast; and how long to wait.
    redis_wait_replicas: int = 0
    redis_wait_timeout_ms: int = 1000
    # Feast's online_store redis_type (redis, redis_cluster, redis_sentinel); "" = the
    # yaml's. `featureline dev up --redis-cluster` asks for redis_cluster here, so the
    # demo repo's yaml reaches the dev cluster through its first node as the seed.
    redis_type: str = ""
    # The online store's nodes, comma-separated host:port (a connection_string's node
    # items without its options): a cluster's seeds or the sentinels, for deployments
    # that configure by environment (compose, k8s). Replaces the yaml's nodes; the first
    # is host:port, so FEATURELINE_REDIS_HOST/PORT may not be set with it. "" = not set.
    redis_nodes: str = ""
    # Kafka security for every client (stream job, generator, workers): PLAINTEXT,
    # SSL, SASL_PLAINTEXT or SASL_SSL; mechanism PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    kafka_security_protocol: str = ""
    kafka_sasl_mechanism: str = ""
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    # field name -> where its value came from, for values set by env or flag.
    origins: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        defaulted = set(env.get(DEFAULTED_VAR, "").split(","))
        values: dict[str, object] = {}
        origins: dict[str, str] = {}
        for f in dataclasses.fields(cls):
            if f.name in ("extra", "origins"):
                continue
            var = f"FEATURELINE_{f.name.upper()}"
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            if f.name in defaulted and raw == _exported_default(f.name, env):
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
            origins[f.name] = f"env {var}"
        return cls(**values, origins=origins)  # type: ignore[arg-type]

    def with_repo(self, repo: str | Path | None) -> Settings:
        return self if repo is None else self.with_flags(repo=(Path(repo), "--repo"))

    def with_flags(self, **flags: tuple[object, str]) -> Settings:
        """Values given on the command line: name=(value, flag); a None value is not set."""
        given = {name: value for name, (value, _) in flags.items() if value is not None}
        if not given:
            return self
        origins = dict(self.origins)
        origins.update({name: f"flag {flag}" for name, (value, flag) in flags.items() if value is not None})
        return dataclasses.replace(self, **given, origins=origins)  # type: ignore[arg-type]

    def is_set(self, name: str) -> bool:
        """Set by the environment, a flag, or a caller (a value other than the default)."""
        if name in self.origins:
            return True
        return bool(getattr(self, name) != _FIELD_DEFAULTS[name])

    def origin(self, name: str) -> str:
        if name in self.origins:
            return self.origins[name]
        return "settings" if self.is_set(name) else "default"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def redis_addr(self) -> str:
        """What a yaml's connection_string: ${FEATURELINE_REDIS_ADDR} names: every node
        when FEATURELINE_REDIS_NODES is set (Feast's SDK then reads the same seeds)."""
        return self.redis_nodes or f"{self.redis_host}:{self.redis_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/0"

    @property
    def resolved_registry_url(self) -> str:
        if self.registry_url:
            return self.registry_url
        return f"sqlite:///{(self.home / 'registry.db').resolve()}"

    @property
    def resolved_offline_dir(self) -> Path:
        if self.offline_dir:
            return _local_offline_dir(self.offline_dir)
        return (self.repo / "data" / "offline").resolve()

    def env_vars(self) -> dict[str, str]:
        """The variables Feast's feature_store.yaml and the repo's definitions read.
        Overriding settings (host, port, registry URL) only when set: an exported
        default would read as set in a child process. REDIS_ADDR, KAFKA_BOOTSTRAP and
        the registry URL's default are there for yamls that expand them (the demo's)."""
        out = {
            "FEATURELINE_REPO": str(self.repo),
            "FEATURELINE_HOME": str(self.home),
            "FEATURELINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "FEATURELINE_REDIS_ADDR": self.redis_addr,
            "FEATURELINE_REGISTRY_URL": self.resolved_registry_url,
            "FEATURELINE_OFFLINE_DIR": str(self.resolved_offline_dir),
        }
        for name in ("kafka_host", "kafka_port", "redis_host", "redis_port"):
            if self.is_set(name):
                out[f"FEATURELINE_{name.upper()}"] = str(getattr(self, name))
        out[DEFAULTED_VAR] = "" if self.is_set("registry_url") else "registry_url"
        return out

    def export_env(self) -> None:
        os.environ.update(self.env_vars())


DEFAULTED_VAR = "FEATURELINE_DEFAULTED"
_FIELD_DEFAULTS: dict[str, object] = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(Settings)
}


def _exported_default(name: str, env: Mapping[str, str]) -> str:
    """What export_env writes for `name` when it is not set."""
    if name == "registry_url":
        home = Path(env.get("FEATURELINE_HOME") or str(_FIELD_DEFAULTS["home"]))
        return Settings(home=home).resolved_registry_url
    return str(_FIELD_DEFAULTS[name])


def _local_offline_dir(raw: str) -> Path:
    """The offline dir as a local path. It is written with local file I/O (the stream
    job's Parquet sink, backfill's outputs, compaction), so an object-store URI would
    become a relative path such as ./s3a:/bucket: refused. Object stores are supported
    as FileSource paths (featureline.object_store); mount a shared volume here instead."""
    scheme, sep, rest = raw.partition("://")
    if not sep:
        return Path(raw).resolve()
    if scheme.lower() == "file":
        return Path(rest).resolve()
    raise BadInputError(
        f"FEATURELINE_OFFLINE_DIR={raw!r}: the offline dir must be a local or mounted path "
        f"(or file://), not a {scheme}:// URI; object-store URIs are supported as FileSource "
        "paths in the repo, not as the offline dir"
    )


def _coerce(type_name: object, raw: str, name: str) -> object:
    text = str(type_name)
    try:
        if text == "int":
            return int(raw)
        if text == "Path":
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"FEATURELINE_{name.upper()}={raw!r}: expected an integer") from exc
    return raw
