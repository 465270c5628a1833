"""The stream job writes its computed features offline in the backfill's layout: after
runs cut by SIGKILL, the streamed rows equal what the backfill's own per-partition
tasks (batch.backfill.compute, the code Spark runs) compute from the raw events the
job stored, with no row written twice. Real broker, Redis, Beam DirectRunner."""

from __future__ import annotations

import random
import re
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from stream_helpers import StreamCase, make_events, now_us, send, stop_job, wait_applied

from batch.backfill.compute import DATE, FeatureRowsTask, TileRowsTask
from batch.backfill.events import EventColumns, read_raw_events
from batch.backfill.tile_states import STATE, TILE_SIZE_S, TILE_START_S
from featureline.offline import KAFKA_OFFSET, KAFKA_PARTITION, raw_dir, read_table
from featureline.online.tiles import decode_tile, merge_tile_states, offsets_key
from featureline.specs import ViewSpec

pytestmark = pytest.mark.beam
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
    from streaming.offsets import OffsetStore, group_id

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


def _backfill_events(case: StreamCase, view: ViewSpec) -> pa.Table:
    """The raw events as the backfill reads them (deduplicated, with its time columns)."""
    base = raw_dir(case.settings.resolved_offline_dir, case.topic)
    return read_raw_events(base, EventColumns.of(view), None, None)


def _rows(table: pa.Table) -> list[dict[str, Any]]:
    rows = table.to_pylist()
    for row in rows:
        row[DATE] = str(row[DATE])
    return sorted(rows, key=lambda r: (r[KAFKA_PARTITION], r[KAFKA_OFFSET]))


def _merged_tiles(table: pa.Table, keys: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
    """(keys, tile size, tile start, partition, date) -> the merge of its rows' states."""
    merged: dict[tuple[Any, ...], Any] = defaultdict(dict)
    for row in table.to_pylist():
        ident = (*(row[k] for k in keys), row[TILE_SIZE_S], row[TILE_START_S],
                 row[KAFKA_PARTITION], str(row[DATE]))  # fmt: skip
        merge_tile_states(merged[ident], decode_tile(row[STATE]))
    return dict(merged)


def test_streamed_computed_rows_equal_backfill_and_survive_kills(
    stream_case: StreamCase, redis_client: Any
) -> None:
    events = _run_with_kills(stream_case, redis_client, rounds=2)
    offline = stream_case.settings.resolved_offline_dir
    # Latest-value view: one row per event, exactly once, as the backfill writes it.
    plain = stream_case.repo.view("user_last_txn")
    events_table = _backfill_events(stream_case, plain)
    task = FeatureRowsTask(plain, events_table.schema, -FAR, FAR)
    want = pa.Table.from_batches(list(task(iter(events_table.to_batches()))))
    got = read_table(offline / "user_last_txn")
    assert got.num_rows == len(events)
    assert got.schema.remove(got.schema.get_field_index(DATE)) == want.schema.remove(
        want.schema.get_field_index(DATE)
    )
    assert _rows(got) == _rows(want)
    # Aggregating views: tiles, one row per tile and flush; merged, the backfill's tiles.
    checked = 0
    for name in ("user_txn_stats", "merchant_txn_stats"):
        view = stream_case.repo.view(name)
        events_table = _backfill_events(stream_case, view)
        tiles = TileRowsTask(view, -FAR, FAR)(iter(events_table.to_batches()))
        want_tiles = _merged_tiles(pa.Table.from_batches(list(tiles)), view.join_key_names)
        got_tiles = _merged_tiles(read_table(offline / "_tiles" / name), view.join_key_names)
        assert got_tiles.keys() == want_tiles.keys(), name
        for ident, states in want_tiles.items():
            assert got_tiles[ident] == states, (name, ident)
        checked += len(want_tiles)
    assert checked > 0
    # Every streamed file is named by the offset range it holds, like the raw files.
    for path in Path(offline, "_tiles").rglob("*.parquet"):
        assert path.name.startswith(f"{stream_case.topic}-"), path
