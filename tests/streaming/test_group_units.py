"""Pure logic of the consumer-group loop (streaming.group.Handover, run_member) and the
stream command's group flags; no services. The group itself runs on real Tansu in
test_rebalance.py."""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable

import pytest

from featureline.errors import BadInputError
from featureline.streaming import cli
from featureline.streaming.group import Assignment, Handover, run_member


class Pipeline:
    """Stands for a running Beam pipeline: runs until stopped, records what it ran."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.ran: list[Assignment] = []
        self.running = threading.Event()

    def run(self, parts: Assignment) -> None:
        self.ran.append(parts)
        self.running.set()
        self.stop.wait(10)
        time.sleep(0.05)  # the drain: flush and commit take a while
        self.running.clear()


def _start(pipeline: Pipeline, exiting: threading.Event) -> tuple[Handover, threading.Thread]:
    handover = Handover(pipeline.stop.set, pipeline.stop.clear, exiting)
    loop = threading.Thread(target=run_member, args=(handover, pipeline.run))
    loop.start()
    return handover, loop


def test_revocation_returns_only_after_the_pipeline_drained() -> None:
    pipeline, exiting = Pipeline(), threading.Event()
    handover, loop = _start(pipeline, exiting)
    handover.assigned([("t", 0), ("t", 1)])
    assert pipeline.running.wait(5)
    handover.revoked()  # as kafka-python calls it, before rejoining
    assert not pipeline.running.is_set()  # no second writer can start on t:0, t:1 yet
    assert handover.drain_s >= 0.05
    handover.assigned([("t", 1)])
    assert _wait(lambda: len(pipeline.ran) == 2 and pipeline.running.is_set())
    assert pipeline.ran == [frozenset({("t", 0), ("t", 1)}), frozenset({("t", 1)})]
    assert not pipeline.stop.is_set()  # the next pipeline runs (STOP cleared)
    exiting.set()
    pipeline.stop.set()  # what SIGTERM does
    loop.join(5)
    assert not loop.is_alive()


def test_an_assignment_revoked_before_it_started_is_never_run() -> None:
    pipeline, exiting = Pipeline(), threading.Event()
    handover = Handover(pipeline.stop.set, pipeline.stop.clear, exiting)
    handover.assigned([("t", 0)])
    handover.revoked()  # the loop had not taken it yet
    handover.assigned([("t", 2)])
    loop = threading.Thread(target=run_member, args=(handover, pipeline.run))
    loop.start()
    assert _wait(lambda: pipeline.running.is_set())
    assert pipeline.ran == [frozenset({("t", 2)})]
    exiting.set()
    pipeline.stop.set()
    loop.join(5)


def test_an_empty_assignment_idles_until_revoked_then_runs_the_next() -> None:
    pipeline, exiting = Pipeline(), threading.Event()
    handover, loop = _start(pipeline, exiting)
    handover.assigned([])  # more members than partitions
    time.sleep(0.3)
    assert pipeline.ran == []
    handover.revoked()
    handover.assigned([("t", 0)])
    assert _wait(lambda: pipeline.running.is_set())
    exiting.set()
    pipeline.stop.set()
    loop.join(5)
    assert not loop.is_alive()
    assert pipeline.ran == [frozenset({("t", 0)})]


def test_exit_while_waiting_for_an_assignment_ends_the_loop() -> None:
    pipeline, exiting = Pipeline(), threading.Event()
    _, loop = _start(pipeline, exiting)
    time.sleep(0.1)
    exiting.set()
    loop.join(2)
    assert not loop.is_alive()
    assert pipeline.ran == []


def _wait(check: Callable[[], bool], timeout_s: float = 5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return False


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.configure(parser)
    return parser.parse_args(list(argv))


def test_group_mode_defaults_and_refusals() -> None:
    assert cli._group_mode(_args()) == "static"
    assert cli._group_mode(_args("--workers", "3")) == "dynamic"
    assert cli._group_mode(_args("--workers", "3", "--group-mode", "static")) == "static"
    assert cli._group_mode(_args("--group-mode", "dynamic", "--instance-id", "host-a")) == "dynamic"
    with pytest.raises(BadInputError, match="--shard is static"):
        cli._group_mode(_args("--group-mode", "dynamic", "--shard", "0/2"))
    with pytest.raises(BadInputError, match="DirectRunner"):
        cli._group_mode(_args("--workers", "2", "--runner", "FlinkRunner"))
    with pytest.raises(BadInputError, match="needs --group-mode dynamic"):
        cli._group_mode(_args("--instance-id", "host-a"))
