"""Fixtures for historical retrieval tests: one Spark session for the whole run, and a
Spark standalone cluster (master + one worker) on loopback for the spark-submit test."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Any:
    from featureline.batch.spark import get_spark

    return get_spark()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark process exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"Spark master did not listen on {port} in {timeout_s} s: {log.read_text()[-2000:]}")


def _spark_class(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    from featureline.batch.spark import spark_home

    env = {
        **os.environ,
        "SPARK_HOME": spark_home(),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable,
        # The worker's own JVM and the daemons need little heap here.
        "SPARK_DAEMON_MEMORY": "256m",
    }
    return subprocess.Popen(
        [str(Path(spark_home()) / "bin" / "spark-class"), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def standalone_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(spark://127.0.0.1:PORT, the worker's work dir) of a standalone master with one
    1-core, 1 GiB worker."""
    logs = tmp_path_factory.mktemp("spark-standalone")
    port = _free_port()
    master = _spark_class(
        [
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            "0",
        ],
        logs / "master.log",
    )
    worker = None
    try:
        _wait_for_port(port, master, logs / "master.log")
        url = f"spark://127.0.0.1:{port}"
        worker = _spark_class(
            [
                "org.apache.spark.deploy.worker.Worker",
                url,
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "1g",
                "--webui-port",
                "0",
                "--work-dir",
                str(logs / "work"),
            ],
            logs / "worker.log",
        )
        yield url, logs / "work"
    finally:
        if worker is not None:
            _stop(worker)
        _stop(master)
