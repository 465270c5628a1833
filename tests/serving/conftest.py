"""Fixtures of the serving tests: a small Feast repo, data written to the real Redis in
the shared core's formats, and `featureline serve` running as a real subprocess."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serving_data import SERVING_REPO_FILES, ServerProcess

from featureline.devstack import free_ports
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


def start_server(settings: Settings, *extra: str, workers: int = 1) -> ServerProcess:
    http_port, grpc_port = free_ports(2)
    env = {**os.environ, **settings.env_vars(), "FEATURELINE_HOME": str(settings.home)}
    argv = [
        sys.executable,
        "-m",
        "featureline.cli",
        "serve",
        "--repo",
        str(settings.repo),
        "--host",
        "127.0.0.1",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc_port),
        "--workers",
        str(workers),
        *extra,
    ]
    log = open(settings.home / f"serve-{http_port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(proc, http_port, grpc_port, Path(log.name))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"featureline serve exited: {server.log_text()}")
        try:
            httpx.get(f"{server.url}/openapi.json", timeout=1.0)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"featureline serve did not answer in 60 s: {server.log_text()}")


@pytest.fixture(scope="session")
def server(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[ServerProcess]:
    """`featureline serve` on the session Redis with limits small enough to test."""
    proc = start_server(serving_settings, "--max-entities", "1000", "--max-body-bytes", "200000")
    try:
        yield proc
    finally:
        proc.stop()
