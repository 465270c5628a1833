"""Fixtures of the batch tests: the demo repo's specs and small raw event sets."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pyarrow as pa
import pytest
from batch_events import make_events

from featureline.repo import load_repo
from featureline.settings import Settings
from featureline.specs import RepoSpec

REPO = Path(__file__).resolve().parents[2] / "feature_repo"


@pytest.fixture(scope="session")
def batch_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-home")


@pytest.fixture(scope="session")
def demo_settings(batch_home: Path) -> Settings:
    """The demo repo with its offline store under a temporary directory."""
    return dataclasses.replace(
        Settings.from_env(), repo=REPO, home=batch_home, offline_dir=str(batch_home / "offline")
    )


@pytest.fixture(scope="session")
def demo_spec(demo_settings: Settings) -> RepoSpec:
    return load_repo(demo_settings)


@pytest.fixture(scope="session")
def small_events() -> pa.Table:
    return make_events(600)
