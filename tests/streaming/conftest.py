"""Fixtures for the streaming tests: a private copy of the demo repo per test, with its
own project and topic, so tests share the session's Redis and broker without meeting."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from serve_process import ServerProcess, start_server
from spread_repo import with_spread_aggregations
from stream_helpers import DEMO_REPO, StreamCase

from benchmarks.stream.repo import isolated_repo
from featureline.settings import Settings


@pytest.fixture
def stream_case(stack: Settings, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StreamCase]:
    from featureline.cli.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"st{uuid.uuid4().hex[:8]}"
    settings = isolated_repo(dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, name)
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
