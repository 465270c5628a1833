"""Typed settings with stated defaults, read from FEATURELINE_* environment variables.

One frozen object; every command builds it once (`Settings.from_env()`), applies CLI
overrides with `dataclasses.replace`, and exports it to the environment with
`export_env()` so that Feast's `feature_store.yaml` (which uses ${FEATURELINE_*})
and child processes see the same values.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    extra: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name == "extra":
                continue
            raw = env.get(f"FEATURELINE_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            values[f.name] = _coerce(f.type, raw, f.name)
        return cls(**values)  # type: ignore[arg-type]

    def with_repo(self, repo: str | Path | None) -> Settings:
        return self if repo is None else dataclasses.replace(self, repo=Path(repo))

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def redis_addr(self) -> str:
        return f"{self.redis_host}:{self.redis_port}"

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
            return Path(self.offline_dir).resolve()
        return (self.repo / "data" / "offline").resolve()

    def env_vars(self) -> dict[str, str]:
        """The variables Feast's feature_store.yaml and the repo's definitions read."""
        return {
            "FEATURELINE_REPO": str(self.repo),
            "FEATURELINE_HOME": str(self.home),
            "FEATURELINE_KAFKA_HOST": self.kafka_host,
            "FEATURELINE_KAFKA_PORT": str(self.kafka_port),
            "FEATURELINE_KAFKA_BOOTSTRAP": self.kafka_bootstrap,
            "FEATURELINE_REDIS_HOST": self.redis_host,
            "FEATURELINE_REDIS_PORT": str(self.redis_port),
            "FEATURELINE_REDIS_ADDR": self.redis_addr,
            "FEATURELINE_REGISTRY_URL": self.resolved_registry_url,
            "FEATURELINE_OFFLINE_DIR": str(self.resolved_offline_dir),
        }

    def export_env(self) -> None:
        os.environ.update(self.env_vars())


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
