"""The stream job writes its computed features offline in the backfill's layout: after
runs cut by SIGKILL, the streamed rows hold exactly the events sent (the naive oracle's
tiles for the aggregating views), with no row written twice. Real broker, Redis, Beam
DirectRunner."""

from __future__ import annotations

import random
import re
import signal
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from oracle.naive import to_us
from stream_helpers import StreamCase, make_events, now_us, send, stop_job, wait_applied
from tile_figures import oracle_tiles, same_figures, stored_tiles

from featureline.offline import KAFKA_OFFSET, KAFKA_PARTITION, raw_dir, read_table
from featureline.online.tiles import offsets_key

pytestmark = pytest.mark.beam
# The declared Feast types of the demo views' columns, as Arrow writes them.
ARROW = {"int64": pa.int64(), "float64": pa.float64(), "string": pa.string()}
FAR = 2**62


def _run_with_kills(case: StreamCase, client: Any, rounds: int) -> list[dict[str, Any]]:
    """`rounds` of (send events, start, SIGKILL mid-way), then a run to the end."""
    rng = random.Random(13)
    args = ("--max-records", "400", "--flush-s", "0.3")
    events: list[dict[str, Any]] = []
    last: dict[int, int] = {}
    for round_ in range(rounds):
        batch = make_events(rng, 16_000, users=40, t0_us=now_us(), old=15)
        last = send(case, batch)
        events += batch
        job = case.start_job(*args)
        _wait_any_progress(client, case)
        time.sleep(rng.uniform(0.6, 1.0))  # past a few flushes and commits
        job.send_signal(signal.SIGKILL)
        job.wait(timeout=10)
        assert _marks(client, case) != last, f"round {round_}: finished before the kill"
    _lose_commits(case)
    job = case.start_job(*args)
    try:
        wait_applied(client, case, last, job, timeout_s=120)
    finally:
        err = stop_job(job)
    removed = re.search(r"(\d+) uncommitted offline files removed", err)
    assert removed is not None and int(removed.group(1)) > 0, err[-2000:]
    return events


def _lose_commits(case: StreamCase) -> None:
    """Move the committed offsets back about half way (to a file's first offset: every
    commit is one, the offset after the previous file), as if the last commits of the
    killed runs were lost after their files were written: a SIGKILL lands between a
    file's rename and the commit too rarely for a test to rely on it. The restart must
    remove every file from there on (raw and computed) and write those events again."""
    from featureline.streaming.offsets import OffsetStore, group_id

    store = OffsetStore(case.settings.kafka_bootstrap, group_id(case.project))
    try:
        committed = store.start_offsets(case.topic, "committed")
        store.commit(case.topic, {p: _file_start(case, p, off // 2) for p, off in committed.items()})
    finally:
        store.close()


def _file_start(case: StreamCase, partition: int, near: int) -> int:
    """The first offset of the partition's raw file that starts closest to `near`."""
    base = raw_dir(case.settings.resolved_offline_dir, case.topic)
    starts = [int(f.name.split("-")[-2]) for f in base.glob(f"date=*/{case.topic}-{partition}-*.parquet")]
    return min(starts, key=lambda s: abs(s - near)) if starts else 0


def _marks(client: Any, case: StreamCase) -> dict[int, int]:
    marks = {p: client.get(offsets_key(case.project, case.topic, p)) for p in range(3)}
    return {p: int(m) for p, m in marks.items() if m is not None}


def _wait_any_progress(client: Any, case: StreamCase, timeout_s: float = 60) -> None:
    before = _marks(client, case)
    deadline = time.monotonic() + timeout_s
    while _marks(client, case) == before:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.05)


def test_streamed_computed_rows_equal_the_oracle_and_survive_kills(
    stream_case: StreamCase, redis_client: Any
) -> None:
    events = _run_with_kills(stream_case, redis_client, rounds=2)
    offline = stream_case.settings.resolved_offline_dir
    # Latest-value view: one row per event, exactly once, the event's own values.
    plain = stream_case.repo.view("user_last_txn")
    got = read_table(offline / "user_last_txn")
    ids = list(zip(got[KAFKA_PARTITION].to_pylist(), got[KAFKA_OFFSET].to_pylist(), strict=True))
    assert len(ids) == len(set(ids)) == len(events)
    names = ["user_id", *plain.feature_names]
    for f in plain.features:
        assert got.schema.field(f.name).type == ARROW[f.dtype], f.name

    def row_key(values: list[Any]) -> str:  # repr keeps the type: 3 and 3.0 differ
        return repr(values)

    got_rows = sorted(row_key([to_us(r["event_timestamp"])] + [r[n] for n in names]) for r in got.to_pylist())
    want_rows = sorted(row_key([e["_ts_us"]] + [e[n] for n in names]) for e in events)
    assert got_rows == want_rows
    # Aggregating views: the tiles, merged, hold exactly the events of each tile.
    checked = 0
    for name in ("user_txn_stats", "merchant_txn_stats"):
        view = stream_case.repo.view(name)
        got_tiles = stored_tiles(view, read_table(offline / "_tiles" / name))
        want_tiles = oracle_tiles(view, events)
        assert got_tiles.keys() == want_tiles.keys(), name
        for ident, figures in want_tiles.items():
            stored = got_tiles[ident]
            assert same_figures(stored, figures), (name, ident, stored, figures)
            checked += 1
    assert checked > 0
    # Every streamed file is named by the offset range it holds, like the raw files.
    for path in Path(offline, "_tiles").rglob("*.parquet"):
        assert path.name.startswith(f"{stream_case.topic}-"), path
