"""A Spark standalone cluster (one master, one worker) on loopback, for tests.

Started with `spark-class` from the pyspark package (SPARK_HOME = its directory), as
an operator would start one; stopped by process id. One per session (the
`spark_standalone` fixture of tests/conftest.py): the batch backfill and the historical
spark-submit run their applications on it one after the other (two JVM daemons and a
worker registration, ~10-20 s on a loaded 2-core machine, started once instead of twice).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from featureline.batch.spark import JAVA_OPTIONS_VAR, spark_home
from featureline.cli.devstack import free_ports


@dataclass
class StandaloneCluster:
    master_url: str
    processes: list[subprocess.Popen[bytes]]
    logs: Path

    @property
    def work_dir(self) -> Path:
        """Where the worker puts each application's executors (app-* folders)."""
        return self.logs / "worker"

    def applications(self) -> set[str]:
        """The applications the worker has launched executors for so far."""
        if not self.work_dir.is_dir():
            return set()
        return {p.name for p in self.work_dir.iterdir() if p.name.startswith("app-")}

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SPARK_HOME": spark_home(),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_WORKER_DIR": str(work / "worker"),
        "SPARK_NO_DAEMONIZE": "1",
        # The master's and worker's own JVMs need little heap here (default 1 GiB each).
        "SPARK_DAEMON_MEMORY": "256m",
        # The conftest's short-run JIT/GC settings (featureline.batch.spark) for the
        # master and worker JVMs too: they only register and launch executors.
        "SPARK_DAEMON_JAVA_OPTS": os.environ.get(JAVA_OPTIONS_VAR, ""),
    }


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark master exited: {log.read_text()[-2000:]}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"Spark master not listening after {timeout_s} s")


def _wait_worker(ui_port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Until the master's status page (/json) lists an ALIVE worker."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"Spark worker exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json", timeout=2) as resp:
                status = json.load(resp)
            if any(w.get("state") == "ALIVE" for w in status.get("workers", [])):
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"Spark worker did not register within {timeout_s} s")


def start_standalone(work: Path, timeout_s: float = 90) -> StandaloneCluster:
    """Master + one worker (1 core, 1 GiB) on 127.0.0.1; returns once the worker is
    registered with the master."""
    work.mkdir(parents=True, exist_ok=True)
    master_port, master_ui, worker_ui = free_ports(3)
    spark_class = str(Path(spark_home()) / "bin" / "spark-class")
    env = _env(work)
    master_log = work / "master.log"
    master = subprocess.Popen(
        [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
         "--port", str(master_port), "--webui-port", str(master_ui)],
        env=env, stdout=master_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"spark://127.0.0.1:{master_port}"
    cluster = StandaloneCluster(url, [master], work)
    try:
        _wait_port(master_port, master, master_log, timeout_s)
        worker_log = work / "worker.log"
        worker = subprocess.Popen(
            [spark_class, "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1",
             "--cores", "1", "--memory", "1g", "--webui-port", str(worker_ui), url],
            env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        cluster.processes.append(worker)
        _wait_worker(master_ui, worker, worker_log, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster
