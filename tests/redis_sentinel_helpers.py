"""Fixtures of a real local Sentinel setup (featureline.cli.devstack.redis_sentinel): one
primary, one replica, three sentinels, loopback, free ports, with a password on the data
nodes (the sentinels have none, as Feast configures them).

Import the fixture functions into a test module (`from redis_sentinel_helpers import
sentinel_setup_fixture`): the fixture `sentinel_setup` then has module scope (~3 s to
start). A test that fails the primary over changes the setup for the tests after it:
such a test uses `fresh_sentinel_setup`, a setup of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from featureline.cli.devstack.redis_sentinel import SentinelSetup, running_sentinel_setup

PASSWORD = "sentinel-pw-4c1"
T = TypeVar("T")


@pytest.fixture(scope="module", name="sentinel_setup")
def sentinel_setup_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelSetup]:
    with running_sentinel_setup(tmp_path_factory.mktemp("sentinel"), password=PASSWORD) as setup:
        yield setup


@pytest.fixture(name="fresh_sentinel_setup")
def fresh_sentinel_setup_fixture(tmp_path: Path) -> Iterator[SentinelSetup]:
    with running_sentinel_setup(tmp_path / "sentinel", password=PASSWORD) as setup:
        yield setup


def eventually(check: Callable[[], T | None], timeout_s: float, what: str, step_s: float = 0.05) -> T:
    """Poll `check` until it returns something other than None; fail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(step_s)
