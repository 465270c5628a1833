"""`featureline ui` against hostile clients (issue 14's HTTP/1.1 cases): the UI runs on
the serving API's own HTTP/1.1 server (featureline/ui/server.py), with the same
`--http-*` limits, so the cases that concern any HTTP server (not the serving API's
JSON bodies) must pass against the UI process as they do against `featureline serve`:
alive afterwards, a page asked for on another connection every 50 ms answered within
1 s throughout, peak RSS growth under 64 MiB, the abusive connection closed. uvicorn,
which served the UI before, never closed a slowloris connection."""

from __future__ import annotations

import dataclasses
import http.client
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hostile import MAX_GROWTH_MIB, PROBE_DEADLINE_S, Attack, reset_peak, status_kib
from test_hostile_http import (
    BODY_TIMEOUT_S,
    HEADER_TIMEOUT_S,
    IDLE_TIMEOUT_S,
    SEND_TIMEOUT_S,
    idle_connections,
    oversized_headers,
    pipelined_flood,
    slowloris,
    smuggling_cl_te,
)
from ui_process import UiProcess, start_ui

from featureline.repo import load_repo
from featureline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (
    *("--http-header-timeout-s", str(HEADER_TIMEOUT_S), "--http-body-timeout-s", str(BODY_TIMEOUT_S)),
    *("--http-idle-timeout-s", str(IDLE_TIMEOUT_S), "--http-send-timeout-s", str(SEND_TIMEOUT_S)),
    *("--http-max-unsent-bytes", str(64 * 1024)),
)
CASES = [slowloris, oversized_headers, smuggling_cl_te, pipelined_flood, idle_connections]


@pytest.fixture(scope="module")
def ui(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiProcess]:
    home = tmp_path_factory.mktemp("ui-hostile")
    settings = dataclasses.replace(stack, repo=ROOT / "feature_repo", home=home)
    load_repo(settings)  # parsed here (Feast's import), cached in home for the child
    process = start_ui(settings, *FLAGS)
    try:
        yield process
    finally:
        process.stop()


def _probe(port: int, stop: threading.Event, latencies: list[float], failures: list[str]) -> None:
    """GET /health on a connection of its own every 50 ms until `stop`."""
    while not stop.is_set():
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_DEADLINE_S)
        try:
            conn.request("GET", "/health")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"status {response.status}")
            else:
                latencies.append(time.perf_counter() - start)
        except Exception as exc:  # a probe's failure is a finding, not a test error
            failures.append(f"{type(exc).__name__}: {str(exc)[:200]}")
        finally:
            conn.close()
        stop.wait(0.05)


@pytest.mark.parametrize("attack", CASES, ids=[case.__name__ for case in CASES])
def test_ui_port_survives(ui: UiProcess, attack: Attack) -> None:
    pid = ui.proc.pid
    before_kib = status_kib(pid, "VmRSS")
    reset_peak(pid)
    latencies: list[float] = []
    failures: list[str] = []
    stop = threading.Event()
    prober = threading.Thread(target=_probe, args=(ui.port, stop, latencies, failures), daemon=True)
    prober.start()
    try:
        closed = attack("127.0.0.1", ui.port)
    finally:
        time.sleep(0.2)  # at least one probe after the attack's last byte
        stop.set()
        prober.join(10)
    assert ui.proc.poll() is None, f"the UI died:\n{ui.log_text()}"
    growth_mib = (status_kib(pid, "VmHWM") - before_kib) / 1024
    assert closed, "the abusive connection was neither closed nor refused"
    assert growth_mib < MAX_GROWTH_MIB, f"the UI grew by {growth_mib:.0f} MiB"
    assert not failures, f"{len(failures)} probe(s) failed, first: {failures[0]}"
    assert len(latencies) >= 2 and max(latencies) <= PROBE_DEADLINE_S, latencies
