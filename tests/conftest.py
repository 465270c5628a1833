"""Shared fixtures. Services are real: Redis and Tansu from the dev stack, started once
per session on free ports in a temporary home (nothing touches ./.featureline)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from featureline.batch.spark import JAVA_OPTIONS_VAR, SHORT_RUN_JAVA_OPTIONS
from featureline.settings import Settings

if TYPE_CHECKING:
    import redis


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3.0.12 loads its protocol schemas with importlib.resources.read_text,
    # deprecated since Python 3.11: ~80 identical warnings per session, none of ours.
    config.addinivalue_line("filterwarnings", "ignore:(read|open)_text is deprecated:DeprecationWarning")
    # Every Spark JVM of the run (this process's session, the CLI children, the
    # standalone cluster's executors) handles a few thousand rows: the short-run JIT/GC
    # settings of featureline.batch.spark halve its warm-up (measured there).
    os.environ.setdefault(JAVA_OPTIONS_VAR, SHORT_RUN_JAVA_OPTIONS)


def pytest_collection_finish(session: pytest.Session) -> None:
    # mypy from cold takes ~64 s of one core: started now, niced, it runs while the
    # tests wait; test_lint joins it (tests/lint_runs.py).
    import lint_runs

    lint_runs.start_if_selected(session.config, session.items)


def pytest_unconfigure(config: pytest.Config) -> None:
    import lint_runs

    lint_runs.stop(config)


def _isolated_settings(home: Path, **overrides: object) -> Settings:
    """Settings for a test: everything under `home`, fresh free ports, no registry URL
    or offline dir inherited from the developer's FEATURELINE_* environment."""
    from featureline.cli.devstack import free_ports

    redis_port, kafka_port = free_ports(2)
    base = dataclasses.replace(
        Settings.from_env(),
        home=home,
        redis_host="127.0.0.1",
        redis_port=redis_port,
        kafka_host="127.0.0.1",
        kafka_port=kafka_port,
        registry_url="",
        offline_dir=str(home / "offline"),
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def isolated_settings() -> Callable[..., Settings]:
    """Factory: `isolated_settings(home, **overrides)` -> Settings on fresh free ports with
    everything under `home`. For tests that start their own stack."""
    return _isolated_settings


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Real Redis + Tansu for the whole session; yields their Settings."""
    from featureline.cli.devstack import start_stack, stop_stack

    settings = _isolated_settings(tmp_path_factory.mktemp("featureline-home"))
    start_stack(settings)
    try:
        yield settings
    finally:
        stop_stack(settings)


@pytest.fixture
def redis_client(stack: Settings) -> Iterator[redis.Redis]:
    """A redis-py client on the session stack's Redis, db 0 flushed before each test."""
    import redis

    client: redis.Redis = redis.Redis.from_url(stack.redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.close()


def _featureline_env_restored() -> Iterator[None]:
    import os

    saved = {k: v for k, v in os.environ.items() if k.startswith("FEATURELINE_")}
    yield
    for key in [k for k in os.environ if k.startswith("FEATURELINE_")]:
        if key not in saved:
            del os.environ[key]
    os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_featureline_env() -> Iterator[None]:
    """Commands export their settings to os.environ (Settings.export_env, for Feast's
    feature_store.yaml); undo that after each test so no test sees another's repo,
    registry or ports."""
    yield from _featureline_env_restored()


@pytest.fixture(scope="module", autouse=True)
def _restore_featureline_env_per_module() -> Iterator[None]:
    """The same after each module: its module fixtures export too (a repo loaded in
    process), before any test's own snapshot; left behind, a FEATURELINE_REDIS_PORT would
    override the next modules' yaml (a cluster's node list among them)."""
    yield from _featureline_env_restored()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real 3-primary, 1-replica-each Redis Cluster for the session (a
    redis_cluster_helpers.LocalCluster). Tests that move slots or kill nodes start their
    own with `redis_cluster_helpers.running_cluster`."""
    from redis_cluster_helpers import running_cluster

    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def spark_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A Spark standalone cluster (master + one 1-core, 1 GiB worker) on loopback for the
    session (a spark_cluster.StandaloneCluster), shared by the tests that submit to one."""
    from spark_cluster import start_standalone

    cluster = start_standalone(tmp_path_factory.mktemp("spark-standalone"))
    try:
        yield cluster
    finally:
        cluster.stop()
