"""Helpers of the Feast-template tests: Feast's CLI and ours as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from featureline.cli.devstack import free_ports

FEAST_DB = 1
OURS_DB = 2
BIN = Path(sys.executable).parent


def feast_env(**extra: str) -> dict[str, str]:
    """The environment for Feast's CLI and the template's own scripts: the venv's
    `feast` on PATH (test_workflow.py runs `feast apply` by name)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURELINE_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def set_online_store(repo: Path, online_store: dict[str, object]) -> None:
    """Rewrite only the `online_store:` entry of the repo's feature_store.yaml."""
    path = repo / "feature_store.yaml"
    config = yaml.safe_load(path.read_text())
    config["online_store"] = online_store
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def copy_repo(template: Path, dest: Path) -> Path:
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("registry.db", "online_store.db"))
    return dest


@dataclass
class Repos:
    """The template against the test Redis: `feast` writes db 1, Featureline db 2."""

    feast: Path
    ours: Path
    redis_port: int


def featureline(repo: Path, *args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`featureline ARGS --repo REPO` as a user runs it: no FEATURELINE_* in the
    environment, so every location comes from the repo's feature_store.yaml."""
    env = feast_env(FEATURELINE_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "featureline.cli", *args, "--repo", str(repo)],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_http(served: Served, path: str, timeout_s: float = 120) -> Served:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if served.proc.poll() is not None:
            raise RuntimeError(f"server exited: {served.log_text()}")
        try:
            httpx.get(served.url + path, timeout=1.0)
            return served
        except httpx.HTTPError:
            time.sleep(0.2)
    served.stop()
    raise RuntimeError(f"server did not answer in {timeout_s:.0f} s: {served.log_text()}")


def start_featureline_serve(repo: Path, home: Path) -> Served:
    return wait_http(spawn_featureline_serve(repo, home), "/health")


def spawn_featureline_serve(repo: Path, home: Path) -> Served:
    """`featureline serve` started, not waited for (wait_http): a caller can start
    `feast serve` meanwhile, each importing its packages on a core of its own."""
    http_port, grpc_port = free_ports(2)
    argv = [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(repo), "--host", "127.0.0.1",
            "--http-port", str(http_port), "--grpc-port", str(grpc_port), "--workers", "1"]  # fmt: skip
    log = home / f"featureline-serve-{http_port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=feast_env(FEATURELINE_HOME=str(home)), stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    return Served(proc, f"http://127.0.0.1:{http_port}", log)


def spawn_feast_serve(repo: Path, home: Path) -> Served:
    """`feast serve` started, not waited for (wait_http)."""
    (port,) = free_ports(1)
    log = home / f"feast-serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "feast"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=repo, env=feast_env(), stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Served(proc, f"http://127.0.0.1:{port}", log)
