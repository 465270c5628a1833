"""`featureline serve` as a real subprocess, for the serving tests and for the streaming
tests that read their results back the way users do."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from featureline.cli.devstack import free_ports
from featureline.errors import FeaturelineError
from featureline.settings import Settings


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@dataclass
class ServerProcess:
    proc: subprocess.Popen[bytes]
    http_port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_text(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        stop_process(self.proc)


_REDIS_LOCATION = ("FEATURELINE_REDIS_HOST", "FEATURELINE_REDIS_PORT", "FEATURELINE_REDIS_NODES")


def child_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `featureline` child process for `settings`. Where Redis is
    comes from the settings (or the repo's yaml): a location inherited from this process
    (an in-process command of an earlier fixture exported its port) would override a
    cluster's node list."""
    inherited = {k: v for k, v in os.environ.items() if k not in _REDIS_LOCATION}
    return {**inherited, **settings.env_vars(), **extra}


def warm_spec_cache(settings: Settings, env: dict[str, str]) -> None:
    """Parse the repo here, as the child will see it (its environment, `--repo`), so the
    child finds its specs in the repo cache (featureline.repo) instead of importing feast
    (~5-8 s of CPU per server start on the 2-core machine; feast is already imported in
    the test process, where a parse costs ~0.03 s). A repo the child would fail to
    read is left to the child, which reports it as it would."""
    from featureline.repo import load_repo

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # what the child's Settings and the repo's definitions read
    try:
        with contextlib.suppress(FeaturelineError):
            load_repo(Settings.from_env().with_repo(settings.repo))
    finally:
        os.environ.clear()
        os.environ.update(saved)


def start_server(
    settings: Settings, *extra: str, workers: int = 1, env_extra: dict[str, str] | None = None
) -> ServerProcess:
    """`featureline serve` on free ports; `env_extra` is set over the settings' variables."""
    http_port, grpc_port = free_ports(2)
    env = child_env(settings, FEATURELINE_HOME=str(settings.home), **(env_extra or {}))
    warm_spec_cache(settings, env)
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
    # 180 s: a start (feast import and repo load, ~5-10 s alone) took over 60 s on the
    # 2-core machine with several test processes running.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"featureline serve exited: {server.log_text()}")
        try:
            httpx.get(f"{server.url}/openapi.json", timeout=1.0)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"featureline serve did not answer in 180 s: {server.log_text()}")


def serve_until_exit(settings: Settings, *flags: str) -> subprocess.CompletedProcess[str]:
    """`featureline serve` expected to stop at start (a bad flag or file): its exit and
    output, after 60 s at most."""
    env = {**os.environ, **settings.env_vars(), "FEATURELINE_HOME": str(settings.home)}
    argv = [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(settings.repo),
            "--http-port", "0", "--grpc-port", "0", *flags]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
