"""Fixtures for the streaming tests: a private copy of the demo repo per test, with its
own project and topic, so tests share the session's Redis and broker without meeting."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_helpers import DEMO_REPO, StreamCase

from featureline.settings import Settings
from streaming.bench import isolated_repo


@pytest.fixture
def stream_case(stack: Settings, tmp_path: Path) -> Iterator[StreamCase]:
    from featureline.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"st{uuid.uuid4().hex[:8]}"
    settings = isolated_repo(dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, name)
    ensure_topic(settings, name, 3)
    repo = load_repo(settings)
    yield StreamCase(settings, repo, name)
