"""`featureline ui` as a real subprocess on a free port, for the web UI's tests."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from serve_process import child_env, log_tail, stop_process

from featureline.cli.devstack import free_ports
from featureline.settings import Settings


@dataclass
class UiProcess:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return log_tail(self.log)

    def stop(self) -> None:
        stop_process(self.proc)


def start_ui(settings: Settings, *flags: str, env_extra: dict[str, str] | None = None) -> UiProcess:
    """`featureline ui --repo <settings.repo> --port <free>`; waits for /health. The repo
    is parsed by the child (~5 s with Feast's import) unless its specs are cached in
    settings.home or FEATURELINE_SPECS_FILE names them."""
    (port,) = free_ports(1)
    env = child_env(settings, FEATURELINE_HOME=str(settings.home), **(env_extra or {}))
    argv = [
        sys.executable,
        "-m",
        "featureline.cli",
        "ui",
        "--repo",
        str(settings.repo),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *flags,
    ]
    settings.home.mkdir(parents=True, exist_ok=True)
    log = open(settings.home / f"ui-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    ui = UiProcess(proc, port, Path(log.name))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"featureline ui exited: {ui.log_text()}")
        try:
            if httpx.get(f"{ui.url}/health", timeout=1.0).status_code == 200:
                return ui
        except httpx.HTTPError:
            time.sleep(0.1)
    ui.stop()
    raise RuntimeError(f"featureline ui did not answer in 90 s: {ui.log_text()}")
