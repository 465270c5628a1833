"""Fixtures of the serving tests: a small Feast repo, data written to the real Redis in
the shared core's formats, and `featureline serve` running as a real subprocess.

`cluster_serving_settings` / `cluster_server`: the same repo on the session Redis
Cluster (Feast's `redis_type: redis_cluster`), for tests parametrized over both."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from serve_process import ServerProcess, start_server
from serving_data import SERVING_REPO_FILES

from featureline.settings import Settings
from featureline.specs import RepoSpec


@pytest.fixture(scope="session")
def serving_settings(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The session stack's Redis, with the serving test repo as --repo."""
    repo = tmp_path_factory.mktemp("serving-repo")
    for name, text in SERVING_REPO_FILES.items():
        (repo / name).write_text(text)
    return dataclasses.replace(stack, repo=repo)


@pytest.fixture(scope="session")
def serving_spec(serving_settings: Settings) -> RepoSpec:
    from featureline.repo import load_repo

    return load_repo(serving_settings)


@pytest.fixture(scope="session")
def server(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    """`featureline serve` on the session Redis with limits small enough to test."""
    proc = start_server(serving_settings, "--max-entities", "1000", "--max-body-bytes", "200000")
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def cluster_serving_settings(
    stack: Settings, redis_cluster: Any, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    """The serving test repo on the session Redis Cluster, configured as a Feast user
    does it: redis_type redis_cluster, every node in the connection_string. Its own home
    (so its own registry)."""
    from cluster_repo import on_cluster

    home = tmp_path_factory.mktemp("serving-cluster-home")
    repo = home / "repo"
    repo.mkdir()
    for name, text in SERVING_REPO_FILES.items():
        (repo / name).write_text(text)
    return on_cluster(
        dataclasses.replace(stack, home=home, repo=repo, offline_dir=str(home / "offline")), redis_cluster
    )


@pytest.fixture(scope="session")
def cluster_serving_spec(cluster_serving_settings: Settings) -> RepoSpec:
    from featureline.repo import load_repo

    return load_repo(cluster_serving_settings)


@pytest.fixture(scope="session")
def cluster_server(
    cluster_serving_settings: Settings, cluster_serving_spec: RepoSpec
) -> Iterator[ServerProcess]:
    """`featureline serve` on the session Redis Cluster, limits as `server`'s."""
    proc = start_server(cluster_serving_settings, "--max-entities", "1000", "--max-body-bytes", "200000")
    try:
        yield proc
    finally:
        proc.stop()
