"""Dynamic batching by size and time: pure logic, no I/O, no threads.

A batch opens with its first item and closes when it holds `max_size` items or when
`max_wait_s` has passed since that first item arrived, whichever comes first. Bigger
batches amortize the per-call cost of a feature fetch (~1-2 ms of gRPC round trip on
loopback) and of a model call; the wait bound caps the latency a lone request pays
when traffic is thin. The clock is injected so tests drive time by hand.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Clock = Callable[[], float]  # monotonic seconds
CloseReason = Literal["size", "time", "flush"]


@dataclass(frozen=True)
class Batch(Generic[T]):
    items: list[T]
    opened_at: float  # clock time the first item arrived
    closed_at: float
    reason: CloseReason

    def __len__(self) -> int:
        return len(self.items)


class DynamicBatcher(Generic[T]):
    """Collects items into batches of at most `max_size`, none older than `max_wait_s`.

    `add`/`add_many` return the batches that closed; the caller asks `due()` once
    `time_until_due()` has elapsed, and `flush()` on shutdown.
    """

    def __init__(self, max_size: int, max_wait_s: float, clock: Clock = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be >= 1, got {max_size}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_size = max_size
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._items: list[T] = []
        self._opened_at = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T) -> list[Batch[T]]:
        """Add one item; the batches that closed (none, or one, rarely two)."""
        return self.add_many((item,))

    def add_many(self, items: Sequence[T]) -> list[Batch[T]]:
        """Add items that arrived together (one Kafka poll); every batch that closed,
        in order. Slices instead of appending one by one: a poll brings ~500 items."""
        now = self._clock()
        out: list[Batch[T]] = []
        expired = self._close_if_due(now)
        if expired is not None:
            # The open batch timed out before these items came: it leaves as it is,
            # and they open the next batch (an overdue batch is never extended).
            out.append(expired)
        start = 0
        while start < len(items):
            if not self._items:
                self._opened_at = now
            room = self.max_size - len(self._items)
            self._items.extend(items[start : start + room])
            start += room
            if len(self._items) >= self.max_size:
                out.append(self._close(now, "size"))
        if self._items and self.max_wait_s == 0:
            out.append(self._close(now, "time"))
        return out

    def time_until_due(self) -> float | None:
        """Seconds until the open batch must leave (0 if overdue); None when empty."""
        if not self._items:
            return None
        return max(0.0, self._deadline() - self._clock())

    def due(self) -> Batch[T] | None:
        """The open batch if its wait is over, else None."""
        return self._close_if_due(self._clock())

    def flush(self) -> Batch[T] | None:
        """Close the open batch now, whatever its size (shutdown, end of input)."""
        if not self._items:
            return None
        return self._close(self._clock(), "flush")

    def _close_if_due(self, now: float) -> Batch[T] | None:
        if self._items and now >= self._deadline():
            return self._close(now, "time")
        return None

    def _deadline(self) -> float:
        # One expression for both `due` and `time_until_due`, so that a caller that
        # sleeps time_until_due() always finds the batch due (no float off-by-ulp spin).
        return self._opened_at + self.max_wait_s

    def _close(self, now: float, reason: CloseReason) -> Batch[T]:
        batch = Batch(self._items, self._opened_at, now, reason)
        self._items = []
        return batch
