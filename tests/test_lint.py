"""The team's rules as CI checks: ruff (lint and format) and mypy, clean.

mypy runs in the background from the end of collection (tests/lint_runs.py says why);
this test joins it, or runs it here when the hook did not start it."""

from __future__ import annotations

import pytest
from lint_runs import BACKGROUND, COMMANDS, STARTED, run


@pytest.mark.parametrize("name", list(COMMANDS))
def test_clean(name: str, request: pytest.FixtureRequest) -> None:
    started = request.config.stash.get(STARTED, None) if name == BACKGROUND else None
    done = started.join() if started is not None else run(name)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
