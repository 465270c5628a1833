"""Fixtures for the streaming tests: a private copy of the demo repo per test, with its
own project and topic, so tests share the session's Redis and broker without meeting.

`online_kind` is "redis" (the session stack's Redis); a test parametrized with
`online_kind="redis_cluster"` runs on the session Redis Cluster instead (its repo's yaml
names the cluster, tests/cluster_repo.py), and reads marks with `online_client`."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serve_process import ServerProcess, start_server
from spread_repo import with_spread_aggregations
from stream_helpers import DEMO_REPO, StreamCase

from benchmarks.stream.repo import isolated_repo
from featureline.settings import Settings


@pytest.fixture
def online_kind() -> str:
    """The online store of the test's repo: "redis" unless parametrized."""
    return "redis"


@pytest.fixture
def stream_case(
    stack: Settings, tmp_path: Path, request: pytest.FixtureRequest, online_kind: str
) -> Iterator[StreamCase]:
    from featureline.cli.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"st{uuid.uuid4().hex[:8]}"
    settings = isolated_repo(dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, name)
    if online_kind == "redis_cluster":
        from cluster_repo import on_cluster

        settings = on_cluster(settings, request.getfixturevalue("redis_cluster"))
    if request.node.get_closest_marker("spread_functions"):  # the oracle test; the others keep the demo's
        with_spread_aggregations(settings.repo)
    ensure_topic(settings, name, 3)
    repo = load_repo(settings)
    yield StreamCase(settings, repo, name)


@pytest.fixture
def stream_server(stream_case: StreamCase) -> Iterator[ServerProcess]:
    """`featureline serve` on the test's repo: the streamed values are read back the
    way users read them (REST and gRPC), not from Redis directly."""
    server = start_server(stream_case.settings)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def online_client(stream_case: StreamCase) -> Iterator[Any]:
    """redis-py's client of the test's online store (a cluster client on a cluster), for
    the applied-offset marks; nothing is flushed (the test's project is its own)."""
    from cluster_repo import raw_client

    from featureline.config import online_store

    client = raw_client(online_store(stream_case.settings))
    try:
        yield client
    finally:
        client.close()
