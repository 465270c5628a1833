"""Split a write across forked worker processes, with live progress in the parent.

N workers each take a contiguous slice of the rows (distinct entities, so they never
race on a key) and report rows done through a shared counter. Useful when the client
side (Arrow encoding, ~3 us per entity) is slower than Redis running the LWW script
(~3 us per entity, one core): on machines with cores to spare.
Forked, not spawned: the rows are inherited instead of pickled, and a child starts in
~5 ms instead of ~0.7 s of imports. Arrow's thread pools are fork-safe (re-created in
the child); the child never touches the parent's Spark JVM and leaves with os._exit.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable
from typing import Any

from featureline.errors import ServiceUnavailableError

# (shard index, shard count, add_progress) -> result (an int: rows written)
ShardFn = Callable[[int, int, Callable[[int], None]], int]
_POLL_S = 0.1


def default_workers() -> int:
    """One writer per two cores, at most 4: Redis runs the LWW script on one core, and
    a writer (encoding with Arrow, then waiting on Redis) keeps about one core busy.
    Measured on 2 cores (1M rows, 100k entities): 1 writer 0.75 s, 2 writers 0.85 s."""
    return max(1, min(4, (os.cpu_count() or 1) // 2))


def run_sharded(fn: ShardFn, workers: int, progress: Callable[[int], None] | None = None) -> list[int]:
    """Run fn on every shard; inline when workers == 1. Results in shard order."""
    report = progress or (lambda n: None)
    if workers <= 1:
        return [fn(0, 1, report)]
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=_child, args=(fn, i, workers, counter, results), daemon=True)
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    out: dict[int, Any] = {}
    seen = 0
    while len(out) < workers:
        while not results.empty():
            index, value = results.get()
            out[index] = value
        with counter.get_lock():
            now = counter.value
        if now > seen:
            report(now - seen)
            seen = now
        if len(out) < workers and not any(p.is_alive() for p in procs) and results.empty():
            break
        time.sleep(_POLL_S if len(out) < workers else 0)
    for p in procs:
        p.join()
    errors = [v for v in out.values() if isinstance(v, str)]
    if len(out) < workers or errors:
        detail = errors[0] if errors else "a worker process died"
        raise ServiceUnavailableError(f"materialize worker failed: {detail}")
    return [int(out[i]) for i in range(workers)]


def _child(fn: ShardFn, index: int, count: int, counter: Any, results: Any) -> None:
    def add(n: int) -> None:
        with counter.get_lock():
            counter.value += n

    try:
        value: Any = fn(index, count, add)
    except Exception as exc:  # reported to the parent as an error value
        value = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    results.put((index, value))
    results.close()
    results.join_thread()


def shard_bounds(n: int, index: int, count: int) -> tuple[int, int]:
    """The [lo, hi) rows of shard `index` of `count` over n rows."""
    return n * index // count, n * (index + 1) // count
