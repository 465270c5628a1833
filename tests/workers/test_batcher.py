"""DynamicBatcher: size and time bounds, driven by an in-memory clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featureline.serving_api.workers.batcher import DynamicBatcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_full_batch_leaves_at_once() -> None:
    clock = FakeClock()
    batcher: DynamicBatcher[int] = DynamicBatcher(3, 0.010, clock)
    assert batcher.add(1) == []
    assert batcher.add(2) == []
    [batch] = batcher.add(3)
    assert batch.items == [1, 2, 3]
    assert batch.reason == "size"
    assert len(batcher) == 0
    assert batcher.time_until_due() is None


def test_a_partial_batch_leaves_when_its_first_item_has_waited_max_wait() -> None:
    clock = FakeClock()
    batcher: DynamicBatcher[str] = DynamicBatcher(100, 0.005, clock)
    batcher.add("a")
    clock.advance(0.003)
    batcher.add("b")
    assert batcher.time_until_due() == pytest.approx(0.002)
    assert batcher.due() is None
    clock.advance(0.002)
    assert batcher.time_until_due() == 0.0
    batch = batcher.due()
    assert batch is not None
    assert batch.items == ["a", "b"]
    assert batch.reason == "time"
    assert batch.opened_at == 100.0
    assert batch.closed_at == pytest.approx(100.005)


def test_an_item_arriving_after_the_deadline_opens_the_next_batch() -> None:
    clock = FakeClock()
    batcher: DynamicBatcher[int] = DynamicBatcher(10, 0.001, clock)
    batcher.add(1)
    clock.advance(0.5)
    [overdue] = batcher.add(2)
    assert overdue.items == [1]
    assert overdue.reason == "time"
    assert len(batcher) == 1
    assert batcher.time_until_due() == pytest.approx(0.001)


def test_add_many_splits_a_poll_into_full_batches_and_keeps_the_rest_open() -> None:
    clock = FakeClock()
    batcher: DynamicBatcher[int] = DynamicBatcher(4, 1.0, clock)
    batcher.add(0)
    batches = batcher.add_many(list(range(1, 11)))
    assert [b.items for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(batcher) == 3
    rest = batcher.flush()
    assert rest is not None
    assert (rest.items, rest.reason) == ([8, 9, 10], "flush")
    assert batcher.flush() is None


def test_zero_wait_sends_every_poll_at_once() -> None:
    batcher: DynamicBatcher[int] = DynamicBatcher(1000, 0.0, FakeClock())
    [batch] = batcher.add_many([1, 2, 3])
    assert (batch.items, batch.reason) == ([1, 2, 3], "time")


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_size"):
        DynamicBatcher(0, 0.1)
    with pytest.raises(ValueError, match="max_wait_s"):
        DynamicBatcher(1, -1.0)


@settings(max_examples=200, deadline=None)
@given(
    max_size=st.integers(1, 8),
    max_wait_ms=st.integers(0, 5),
    steps=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 4)), max_size=40),
)
def test_no_item_is_lost_reordered_or_kept_past_its_bounds(
    max_size: int, max_wait_ms: int, steps: list[tuple[int, int]]
) -> None:
    clock = FakeClock()
    wait_s = max_wait_ms / 1000
    batcher: DynamicBatcher[int] = DynamicBatcher(max_size, wait_s, clock)
    sent: list[int] = []
    out = []
    for count, advance_ms in steps:
        out += batcher.add_many(list(range(len(sent), len(sent) + count)))
        sent += range(len(sent), len(sent) + count)
        clock.advance(advance_ms / 1000)
        due = batcher.due()
        if due is not None:
            out.append(due)
    tail = batcher.flush()
    if tail is not None:
        out.append(tail)
    assert [i for b in out for i in b.items] == sent
    for batch in out:
        assert 1 <= len(batch) <= max_size
        if batch.reason == "time":
            assert batch.closed_at >= batch.opened_at + wait_s
