"""The stream benchmark's own copy of the repo: its project and topic, so a bench (or a
test) shares the dev stack without mixing data with anything else on it."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path

from featureline.settings import Settings


@dataclasses.dataclass
class Bench:
    settings: Settings
    topic: str
    project: str
    repo_dir: Path
    partitions: int


def isolated_repo(settings: Settings, workdir: Path, name: str) -> Settings:
    """A copy of the settings' repo under `workdir` with project and topic `name` (and
    its own offline dir), so a bench or a test shares the stack without mixing data."""
    repo_dir = workdir / "repo"
    shutil.copytree(settings.repo, repo_dir, ignore=shutil.ignore_patterns("data", "__pycache__"))
    yaml = repo_dir / "feature_store.yaml"
    yaml.write_text(yaml.read_text().replace("project: featureline_demo", f"project: {name}"))
    src = repo_dir / "sources.py"
    src.write_text(src.read_text().replace('topic="transactions"', f'topic="{name}"'))
    return dataclasses.replace(settings, repo=repo_dir, offline_dir=str(workdir / "offline"))


def bench_repo(settings: Settings, workdir: Path, partitions: int) -> Bench:
    name = f"bench{uuid.uuid4().hex[:6]}"
    bench_settings = isolated_repo(settings, workdir, name)
    return Bench(bench_settings, name, name, bench_settings.repo, partitions)
