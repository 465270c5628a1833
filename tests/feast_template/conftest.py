"""Feast's own template repo, written by `feast init` at test time and left unmodified
except for where its online store is: the test of "any Feast repo is valid input".

Two copies of the template share its data: one whose online store is the test Redis
(db 1 for Feast's writes, db 2 for ours, so both can be compared side by side), and one
whose online store is Feast's `remote` store pointed at `featureline serve`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from template_env import BIN, FEAST_DB, OURS_DB, Repos, copy_repo, feast_env, set_online_store

from featureline.settings import Settings


@pytest.fixture(scope="session")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`feast init tpl` into a temporary directory: Feast's template, as a new user gets it."""
    root = tmp_path_factory.mktemp("feast-init")
    done = subprocess.run(
        [str(BIN / "feast"), "init", "tpl"], cwd=root, env=feast_env(), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    repo = root / "tpl" / "feature_repo"
    assert (repo / "feature_definitions.py").is_file() and (repo / "test_workflow.py").is_file()
    return repo


@pytest.fixture(scope="session")
def repos(template: Path, stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Repos:
    root = tmp_path_factory.mktemp("template-repos")
    feast_repo = copy_repo(template, root / "feast_side")
    ours_repo = copy_repo(template, root / "ours_side")
    host = f"127.0.0.1:{stack.redis_port}"
    set_online_store(feast_repo, {"type": "redis", "connection_string": f"{host},db={FEAST_DB}"})
    set_online_store(ours_repo, {"type": "redis", "connection_string": f"{host},db={OURS_DB}"})
    return Repos(feast_repo, ours_repo, stack.redis_port)


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("template-home")
