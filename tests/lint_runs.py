"""The lint commands of tests/test_lint.py, and mypy started early in the background.

mypy over `featureline benchmarks` takes ~64 s of one core from cold (CI checks out a
clean tree: no .mypy_cache), while most of the suite waits on subprocesses, JVMs and
brokers with a core idle. So when the mypy case is selected, tests/conftest.py starts
it at the end of collection at the lowest CPU priority (nice 19: it only takes CPU
the tests leave idle, so the timing-checked serving tests are not slowed) and
test_lint joins it; same command, same assertion, the wait is mostly gone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMANDS = {
    "ruff-check": ["ruff", "check", "."],
    "ruff-format": ["ruff", "format", "--check", "."],
    "mypy": ["mypy", "featureline", "benchmarks"],
}
BACKGROUND = "mypy"
NODE = f"test_lint.py::test_clean[{BACKGROUND}]"
# A cold run takes ~64 s of CPU (~2-3 min on a loaded 2-core machine); 9 min means hung
# (and stays inside the suite's per-test timeout of 10 min, so the output is shown).
TIMEOUT_S = 540


@dataclass
class Run:
    """One command's exit status and output."""

    returncode: int
    stdout: str
    stderr: str


@dataclass
class Background:
    """A command started with its output in temporary files (a pipe nobody reads until
    the join could fill and block it)."""

    proc: subprocess.Popen[bytes]
    out: IO[bytes]
    err: IO[bytes]

    def join(self) -> Run:
        # Now the suite waits for it: back to normal priority (when allowed: lowering a
        # nice value needs root), or a loaded machine could starve it until the timeout.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, 0)
        try:
            self.proc.wait(timeout=TIMEOUT_S)
        finally:
            self.stop()
        return Run(self.proc.returncode, _read(self.out), _read(self.err))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


STARTED = pytest.StashKey["Background"]()


def _read(fh: IO[bytes]) -> str:
    fh.seek(0)
    text = fh.read().decode(errors="replace")
    fh.close()
    return text


def _lowest_priority() -> None:
    os.nice(19)


def start(name: str) -> Background:
    argv = COMMANDS[name]
    # The files outlive this call: Background.join reads and closes them.
    out, err = tempfile.TemporaryFile(), tempfile.TemporaryFile()  # noqa: SIM115
    proc = subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]], cwd=ROOT, stdout=out, stderr=err, preexec_fn=_lowest_priority
    )
    return Background(proc, out, err)


def run(name: str) -> Run:
    argv = COMMANDS[name]
    done = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S)  # fmt: skip
    return Run(done.returncode, done.stdout, done.stderr)


def start_if_selected(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the background command when its test case is among those to run."""
    if any(item.nodeid.endswith(NODE) for item in items):
        config.stash[STARTED] = start(BACKGROUND)


def stop(config: pytest.Config) -> None:
    """At the end of the session: a run nobody joined (its test deselected by -x) ends."""
    started = config.stash.get(STARTED, None)
    if started is not None:
        started.stop()
