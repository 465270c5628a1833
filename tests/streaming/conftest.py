"""Fixtures for the streaming tests: a private copy of the demo repo per test, with its
own project and topic, so tests share the session's Redis and broker without meeting."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_helpers import DEMO_REPO, StreamCase

from featureline.settings import Settings


@pytest.fixture
def stream_case(stack: Settings, tmp_path: Path) -> Iterator[StreamCase]:
    from featureline.devstack import ensure_topic
    from featureline.repo import load_repo

    name = f"st{uuid.uuid4().hex[:8]}"
    repo_dir = tmp_path / "repo"
    shutil.copytree(DEMO_REPO, repo_dir, ignore=shutil.ignore_patterns("data", "__pycache__"))
    yaml = repo_dir / "feature_store.yaml"
    yaml.write_text(yaml.read_text().replace("project: featureline_demo", f"project: {name}"))
    sources = repo_dir / "sources.py"
    sources.write_text(sources.read_text().replace('topic="transactions"', f'topic="{name}"'))
    settings = dataclasses.replace(stack, repo=repo_dir, offline_dir=str(tmp_path / "offline"))
    ensure_topic(settings, name, 3)
    repo = load_repo(settings)
    yield StreamCase(settings, repo, name)
