"""`materialize`: offline -> online for every online view, latest values and tiles.

    materialize(settings, start, end, views=None, workers=None)
    materialize(settings, incremental=True)

- plain views: the rows of the view's Feast source with start <= ts < end, the
  latest per entity (semantics.md 1), written in Feast's Redis format with the
  shared event-time last-write-wins script, split across worker processes;
- aggregating views: their tiles rebuilt from the raw events (batch.materialize.tiles),
  the tile-aligned range covering [start, end).

`--incremental` runs from where the last run of each view ended (kept in Redis at
`fl:materialized:{project}:{view}`) to now; with no mark (a first run, or a Redis that
lost its data, marks included) it starts at now - ttl for plain views (all history
for ttl 0) and now - (window + tile + retention margin) for tiles: exactly what the
online store must hold, so a restart without persistence is repaired by one run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featureline.batch.backfill.events import EventColumns, datetime_to_us, read_raw_events
from featureline.batch.materialize.latest import LatestLwwWriter, encode_rows, latest_per_key
from featureline.batch.materialize.parallel import default_workers, run_sharded, shard_bounds
from featureline.batch.materialize.tiles import keep_s, raise_watermarks, raw_extent, tile_rows, write_tiles
from featureline.batch.quality import Quality
from featureline.config import RedisConfig, online_store
from featureline.errors import BadInputError, FeaturelineError
from featureline.object_store import Location
from featureline.online_store import OnlineStore, open_store
from featureline.semantics import US
from featureline.settings import Settings
from featureline.specs import RepoSpec, ViewSpec

MARK_PREFIX = "fl:materialized"


@dataclass(frozen=True)
class ViewMaterialized:
    view: str
    kind: str  # "latest" | "tiles"
    start_us: int
    end_us: int
    rows_read: int = 0
    entities: int = 0  # latest: entities sent; tiles: tile hashes written
    written: int = 0  # latest: entities that took the value; tiles: fields written
    seconds: float = 0.0
    error: str = ""
    note: str = ""
    # What the rows read broke of the view's data-quality expectations (one line each).
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class MaterializeReport:
    results: list[ViewMaterialized] = field(default_factory=list)
    # topic -> Kafka partition -> applied-offset watermark set (see restore_watermarks)
    watermarks: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def rows_read(self) -> int:
        return sum(r.rows_read for r in self.results)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.results)


def mark_key(project: str, view: str) -> str:
    return f"{MARK_PREFIX}:{project}:{view}"


def connect(cfg: RedisConfig) -> Any:
    """The online store (online_store.redis.store.RedisStore), after a PING (login, db
    and TLS from the repo's config)."""
    return open_store(cfg)


def online_views(repo: RepoSpec, names: list[str] | None) -> list[ViewSpec]:
    if names:
        views = [repo.view(n) for n in names]
        labels = [v.name for v in views if v.is_label_view]
        if labels:
            # Feast 0.67 refuses the same: labels are written with push, never materialized.
            raise BadInputError(
                f"label view(s) {', '.join(labels)} cannot be materialized; write labels with push"
            )
        offline_only = [v.name for v in views if not v.online]
        if offline_only:
            raise BadInputError(f"view(s) {', '.join(offline_only)} are not online (online=False)")
        return views
    return [
        v
        for _, v in sorted(repo.views.items())
        if v.online and v.batch_source is not None and not v.is_label_view
    ]


def materialize(
    settings: Settings,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    incremental: bool = False,
    views: list[str] | None = None,
    workers: int | None = None,
    now: datetime | None = None,
    fail_on_violation: bool = False,
) -> MaterializeReport:
    from featureline.repo import load_repo

    if not incremental and (start is None or end is None):
        raise BadInputError("give --start and --end, or --incremental")
    repo = load_repo(settings)
    chosen = online_views(repo, views)
    cfg = online_store(settings)
    store = connect(cfg)
    now_us = datetime_to_us(now or datetime.now(UTC))
    report = MaterializeReport()
    with _progress_bar() as bar:
        for view in chosen:
            if incremental:
                lo, hi = _incremental_range(store, settings, repo.project, view, now_us)
            else:
                assert start is not None and end is not None
                lo, hi = datetime_to_us(start), datetime_to_us(end)
                if hi <= lo:
                    raise BadInputError("--end must be after --start")
            quality = Quality(fail_on_violation)
            result = _materialize_view(
                settings, cfg, repo, view, lo, hi, workers, now_us, bar.update, quality
            )
            if result.ok:
                store.raise_watermark(mark_key(repo.project, view.name), hi)
            report.results.append(result)
    done = [v for v, r in zip(chosen, report.results, strict=True) if r.ok]
    ends = [r.end_us for r in report.results if r.ok]
    if ends:
        report.watermarks = restore_watermarks(store, repo, done, min(ends))
    store.close()
    return report


def _progress_bar() -> Any:
    from tqdm import tqdm

    return tqdm(
        desc="materialize", unit=" rows", unit_scale=True, file=sys.stderr,
        disable=not sys.stderr.isatty(),
    )  # fmt: skip


def _incremental_range(
    store: OnlineStore, settings: Settings, project: str, view: ViewSpec, now_us: int
) -> tuple[int, int]:
    mark = store.get_watermark(mark_key(project, view.name))
    if mark is not None:
        return min(int(mark), now_us), now_us
    if view.is_aggregating:
        back = max(a.window_s + a.tile_s for a in view.aggregations)
        return now_us - (back + settings.tile_retention_margin_s) * US, now_us
    return (now_us - view.ttl_s * US if view.ttl_s > 0 else 0), now_us


def _materialize_view(
    settings: Settings,
    cfg: RedisConfig,
    repo: RepoSpec,
    view: ViewSpec,
    start_us: int,
    end_us: int,
    workers: int | None,
    now_us: int,
    progress: Any,
    quality: Quality,
) -> ViewMaterialized:
    began = time.perf_counter()
    kind = "tiles" if view.is_aggregating else "latest"
    try:
        if view.is_aggregating:
            stats = _rebuild_tiles(settings, cfg, repo, view, start_us, end_us, now_us, progress, quality)
        else:
            stats = _write_latest(cfg, repo, view, start_us, end_us, workers, progress, quality)
    except FeaturelineError as exc:
        return ViewMaterialized(view.name, kind, start_us, end_us, error=str(exc), violations=quality.found)
    except (OSError, pa.ArrowException) as exc:  # unreadable Parquet, a dropped connection
        return ViewMaterialized(view.name, kind, start_us, end_us, error=f"{type(exc).__name__}: {exc}")
    rows, entities, written = stats
    seconds = time.perf_counter() - began
    note = ""
    if view.is_aggregating and rows == 0:
        margin = settings.tile_retention_margin_s
        keep_h = max(keep_s(view, s, margin) for s in view.tile_sizes_s()) / 3600
        note = f"no tiles: the online store holds tiles of the last {keep_h:g} h only"
    return ViewMaterialized(
        view.name,
        kind,
        start_us,
        end_us,
        rows,
        entities,
        written,
        seconds,
        note=note,
        violations=quality.found,
    )


def _source_path(view: ViewSpec) -> Location:
    if view.batch_source is None:
        raise BadInputError(f"view {view.name!r} has no file source to materialize from")
    return Location.of(view.batch_source)


def _write_latest(
    cfg: RedisConfig,
    repo: RepoSpec,
    view: ViewSpec,
    start_us: int,
    end_us: int,
    workers: int | None,
    progress: Any,
    quality: Quality,
) -> tuple[int, int, int]:
    cols = EventColumns.of(view)
    rows = read_raw_events(_source_path(view), cols, start_us, end_us)
    quality.check(view, rows)
    latest = latest_per_key(rows, view)
    n = latest.num_rows
    if n == 0:
        return rows.num_rows, 0, 0
    count = workers or default_workers()
    # Below ~20k entities a second process costs more than it saves.
    count = max(1, min(count, n // 20_000))
    has_created = bool(cols.created)

    def shard(index: int, shards: int, add: Any) -> int:
        lo, hi = shard_bounds(n, index, shards)
        store = connect(cfg)
        try:
            writer = LatestLwwWriter(store, view, key_ttl_s=cfg.key_ttl_s)
            encoded = encode_rows(latest.slice(lo, hi - lo), view, repo.project, has_created)
            return writer.write(encoded, add)
        finally:
            store.close()

    written = sum(run_sharded(shard, count, progress))
    return rows.num_rows, n, written


def _rebuild_tiles(
    settings: Settings,
    cfg: RedisConfig,
    repo: RepoSpec,
    view: ViewSpec,
    start_us: int,
    end_us: int,
    now_us: int,
    progress: Any,
    quality: Quality,
) -> tuple[int, int, int]:
    biggest = max(view.tile_sizes_s()) * US
    lo = (start_us // biggest) * biggest  # whole tiles only: a partial tile would be wrong
    hi = -(-end_us // biggest) * biggest
    margin = settings.tile_retention_margin_s
    oldest = now_us - max(keep_s(view, s, margin) for s in view.tile_sizes_s()) * US
    lo = max(lo, (oldest // biggest) * biggest)  # tiles past retention are not held online
    events = read_raw_events(_source_path(view), EventColumns.of(view), lo, hi)
    quality.check(view, events)
    tiles = tile_rows(events, view, lo, hi, now_us, margin)
    store = connect(cfg)
    try:
        fields = write_tiles(store, repo.project, view, tiles, margin, progress)
    finally:
        store.close()
    hashes = tiles.select([*view.join_key_names, "tile_s"]).group_by([*view.join_key_names, "tile_s"])
    return events.num_rows, hashes.aggregate([]).num_rows, fields


def restore_watermarks(
    store: OnlineStore, repo: RepoSpec, done: list[ViewSpec], end_us: int
) -> dict[str, dict[int, int]]:
    """Raise each topic's applied-offset watermarks to the raw store's newest offsets,
    when this run rebuilt everything streaming derives from that topic: every online
    view reading it, up to an end past its newest raw event. Then a resumed stream
    skips what the rebuild already holds. Otherwise the marks are left alone (a
    partial rebuild cannot say which offsets it covers). Returns topic -> marks set."""
    done_names = {v.name for v in done}
    out: dict[str, dict[int, int]] = {}
    topics = {v.stream_source.topic for v in done if v.stream_source is not None}
    for topic in sorted(topics):
        readers = [
            v for v in repo.views.values()
            if v.online and v.stream_source is not None and v.stream_source.topic == topic
        ]  # fmt: skip
        if any(v.name not in done_names for v in readers):
            continue
        first = readers[0]
        marks, newest = raw_extent(_source_path(first), EventColumns.of(first).timestamp)
        if not marks or newest is None or newest >= end_us:
            continue
        raise_watermarks(store, repo.project, topic, marks)
        out[topic] = marks
    return out
