"""The Spark backfill: recompute views' offline features (and tiles) from raw events.

    backfill(settings, start, end, views=None, master=None) -> BackfillReport

The range is widened to whole UTC days (a `date=` partition is the unit a re-run
replaces). Per view (batch.backfill.plan): the raw events the range needs (plus the
windows' lookback) are read, hash-partitioned by join key, computed in Python
workers with the shared semantics (batch.backfill.compute), and written with
partition replace (batch.backfill.spark_io). One view's failure is reported as an
error value and does not stop the others.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from featureline.batch.backfill.arrow_types import spark_ddl
from featureline.batch.backfill.compute import FeatureRowsTask, TileRowsTask
from featureline.batch.backfill.events import EventColumns, datetime_to_us, day_range
from featureline.batch.backfill.plan import ViewPlan, plan_views
from featureline.batch.backfill.spark_io import DayCounts, dedupe_spark, read_events, write_days
from featureline.batch.quality import Quality
from featureline.errors import BadInputError, FeaturelineError
from featureline.semantics import US
from featureline.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DAY_US = 86_400 * US


@dataclass(frozen=True)
class ViewResult:
    view: str
    kind: str
    rows: int = 0
    tiles: int = 0
    seconds: float = 0.0
    error: str = ""
    violations: tuple[str, ...] = ()  # data-quality findings on the events read

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class BackfillReport:
    start_us: int
    end_us: int
    results: list[ViewResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)


def day_bounds(start: datetime, end: datetime) -> tuple[int, int]:
    """[start, end) widened to whole UTC days, in microseconds."""
    start_us, end_us = datetime_to_us(start), datetime_to_us(end)
    if end_us <= start_us:
        raise BadInputError(f"--end ({end.isoformat()}) must be after --start ({start.isoformat()})")
    return (start_us // DAY_US) * DAY_US, -(-end_us // DAY_US) * DAY_US


def backfill(
    settings: Settings,
    start: datetime,
    end: datetime,
    views: list[str] | None = None,
    master: str | None = None,
    partitions: int | None = None,
    fail_on_violation: bool = False,
) -> BackfillReport:
    from featureline.batch.spark import get_spark
    from featureline.repo import load_repo

    start_us, end_us = day_bounds(start, end)
    repo = load_repo(settings)
    plans = plan_views(repo, settings.resolved_offline_dir, views)
    spark = get_spark(master)
    report = BackfillReport(start_us, end_us)
    for plan in _progress(plans):
        began = time.perf_counter()
        quality = Quality(fail_on_violation)
        try:
            rows, tiles = _run_plan(spark, plan, settings, start_us, end_us, partitions, quality)
            seconds = time.perf_counter() - began
            result = ViewResult(plan.name, plan.kind, rows, tiles, seconds, violations=quality.found)
        except FeaturelineError as exc:
            result = ViewResult(plan.name, plan.kind, error=str(exc), violations=quality.found)
        except Exception as exc:  # Spark raises many types; report it, go on
            result = ViewResult(plan.name, plan.kind, error=f"{type(exc).__name__}: {exc}")
        report.results.append(result)
    return report


def _progress(plans: list[ViewPlan]) -> Any:
    from tqdm import tqdm

    return tqdm(plans, desc="backfill", unit="view", file=sys.stderr, disable=not sys.stderr.isatty())


def _run_plan(
    spark: SparkSession,
    plan: ViewPlan,
    settings: Settings,
    start_us: int,
    end_us: int,
    partitions: int | None,
    quality: Quality,
) -> tuple[int, int]:
    if plan.kind == "batch_job":
        return _run_merchant_risk(spark, plan, settings, start_us, end_us), 0
    cols = EventColumns.of(plan.view)
    read_start = start_us - plan.lookback_s * US
    max_tile_us = max((a.tile_s for a in plan.view.aggregations), default=0) * US
    read_end = end_us + max_tile_us
    events = read_events(spark, plan.source, cols, read_start, read_end, day_range(read_start, read_end))
    days = day_range(start_us, end_us)
    if events is None:
        raise BadInputError(f"no raw events at {plan.source} (stream or generate some first)")
    n = partitions or int(spark.conf.get("spark.sql.shuffle.partitions") or 4)
    keyed = events.repartition(n, *cols.join_keys)
    if quality.applies(plan.view):  # before anything is written
        quality.check_spark(plan.view, dedupe_spark(events))
    counts = DayCounts(spark)
    task = FeatureRowsTask(plan.view, _arrow_schema(events), start_us, end_us, counts.accumulator)
    rows_df = keyed.mapInArrow(task, spark_ddl(task.output_schema()))
    rows = write_days(rows_df, plan.output, days, counts)
    tiles = 0
    if plan.tiles is not None:
        tile_counts = DayCounts(spark)
        tile_task = TileRowsTask(plan.view, start_us, end_us, tile_counts.accumulator)
        tiles_df = keyed.mapInArrow(tile_task, spark_ddl(tile_task.output_schema()))
        tiles = write_days(tiles_df, plan.tiles, days, tile_counts)
    return rows, tiles


def _arrow_schema(df: DataFrame) -> Any:
    """The Arrow schema Spark hands mapInArrow for `df` (timestamps as UTC instants)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(df.schema, timezone="UTC")


def _run_merchant_risk(
    spark: SparkSession, plan: ViewPlan, settings: Settings, start_us: int, end_us: int
) -> int:
    from featureline.batch.backfill.merchant_risk import DAY_US as M_DAY_US
    from featureline.batch.backfill.merchant_risk import labels_path, merchant_risk_frame, snapshot_days

    # A snapshot as of a midnight still to come would miss the events yet to arrive.
    end_us = min(end_us, datetime_to_us(datetime.now(UTC)))
    first, last = snapshot_days(start_us, end_us)
    read_start = first * M_DAY_US - plan.lookback_s * US
    read_end = last * M_DAY_US
    cols = EventColumns(("merchant_id",), "event_timestamp", "created", ())
    events = read_events(spark, plan.source, cols, read_start, read_end, day_range(read_start, read_end))
    if events is None:
        raise BadInputError(f"no raw events at {plan.source} (stream or generate some first)")
    frame = merchant_risk_frame(
        spark, dedupe_spark(events), labels_path(settings.resolved_offline_dir), start_us, end_us
    )
    days = day_range(first * M_DAY_US, last * M_DAY_US + 1)
    return write_days(frame, plan.output, days)
