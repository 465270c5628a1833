"""A tqdm bar over the stages of a retrieval (one per view join), on stderr, shown
only when stderr is a terminal (so logs and tests stay clean)."""

from __future__ import annotations

import sys
from typing import Any


class Stages:
    def __init__(self, total: int, label: str) -> None:
        self._bar: Any = None
        if total > 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="join", file=sys.stderr, leave=False)

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
