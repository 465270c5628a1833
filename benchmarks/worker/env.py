"""A self-contained environment for the worker benchmark (and the worker's tests):
Redis and the Kafka broker from `featureline.cli.devstack` on free loopback ports in a
temporary home, synthetic online features, and `featureline serve` as a subprocess.

Nothing outside the repo and the venv is needed, so the same command runs on a
laptop, in CI and on a GPU machine.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from featureline.errors import ServiceUnavailableError
from featureline.settings import Settings

# `featureline serve` loads the cached specs and binds in ~2-4 s on this 2-core
# machine; 90 s leaves room for a first start that has to parse the repo with Feast.
SERVE_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class ServeProcess:
    proc: subprocess.Popen[bytes]
    grpc_target: str
    http_url: str
    log: Path


def isolated_settings(base: Settings, home: Path) -> Settings:
    """`base` with everything under `home` and fresh free ports."""
    from featureline.cli.devstack import free_ports

    redis_port, kafka_port, http_port, grpc_port = free_ports(4)
    return dataclasses.replace(
        base,
        home=home,
        redis_host="127.0.0.1",
        redis_port=redis_port,
        kafka_host="127.0.0.1",
        kafka_port=kafka_port,
        http_port=http_port,
        grpc_port=grpc_port,
        registry_url="",
        offline_dir=str(home / "offline"),
    )


def _wait_serving(serve: ServeProcess, service: str, timeout_s: float) -> None:
    from featureline.errors import FeaturelineError
    from featureline.serving_api.typed_client import TensorClient

    deadline = time.monotonic() + timeout_s
    with TensorClient(serve.grpc_target, service, timeout_s=1.0) as client:
        while True:
            if serve.proc.poll() is not None:
                raise ServiceUnavailableError(
                    f"featureline serve exited ({serve.proc.returncode}) at startup; its log: "
                    f"{serve.log.read_text()[-2000:]}"
                )
            try:
                client.layout()
                return
            except FeaturelineError:
                if time.monotonic() > deadline:
                    raise ServiceUnavailableError(
                        f"featureline serve did not answer on {serve.grpc_target} within "
                        f"{timeout_s:.0f} s; log: {serve.log}"
                    ) from None
                time.sleep(0.2)


@contextmanager
def serving(settings: Settings, service: str, workers: int = 1) -> Iterator[ServeProcess]:
    """`featureline serve` on settings' loopback ports, until the block ends."""
    log = settings.home / "logs" / "serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable, "-m", "featureline.cli", "serve", "--repo", str(settings.repo),
        "--host", "127.0.0.1", "--http-port", str(settings.http_port),
        "--grpc-port", str(settings.grpc_port), "--workers", str(workers),
    ]  # fmt: skip
    env = {**os.environ, **settings.env_vars()}
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    serve = ServeProcess(
        proc, f"127.0.0.1:{settings.grpc_port}", f"http://127.0.0.1:{settings.http_port}", log
    )
    try:
        _wait_serving(serve, service, SERVE_START_TIMEOUT_S)
        yield serve
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)  # the server and its worker processes
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextmanager
def dev_stack(base: Settings, keep_home: Path | None = None) -> Iterator[Settings]:
    """Redis + Kafka on free ports in a temporary home (or `keep_home`)."""
    from featureline.cli.devstack import start_stack, stop_stack

    with tempfile.TemporaryDirectory(prefix="featureline-bench-") as tmp:
        home = keep_home or Path(tmp)
        settings = isolated_settings(base, home)
        start_stack(settings)
        try:
            yield settings
        finally:
            stop_stack(settings)
