"""Spark backfill: recompute views' offline features and tiles from the raw events.

    from featureline.batch.backfill import backfill
    report = backfill(settings, start, end, views=["user_txn_stats"], master="local[2]")

Outputs (Hive-partitioned Parquet, `date=` partitions replaced on re-runs):
- `<offline>/<view>/`: one row per event, the view's features at the event's instant
  (aggregating views), or the event's fields (plain stream views);
- `<offline>/_tiles/<view>/`: the tiles of aggregating views, in the online tile codec;
- `<offline>/merchant_risk/`: the daily merchant risk batch view (its Feast source).

The pure pieces (`tile_states`, `window_values`, `read_raw_events`) are shared with
materialize and the tests; they need no Spark.
"""

from featureline.batch.backfill.events import EventColumns, dedupe_events, read_raw_events, with_times
from featureline.batch.backfill.job import BackfillReport, ViewResult, backfill, day_bounds
from featureline.batch.backfill.plan import ViewPlan, plan_views
from featureline.batch.backfill.windows import plain_values, window_values
from featureline.offline_tiles import tile_states

__all__ = [
    "BackfillReport",
    "EventColumns",
    "ViewPlan",
    "ViewResult",
    "backfill",
    "day_bounds",
    "dedupe_events",
    "plain_values",
    "plan_views",
    "read_raw_events",
    "tile_states",
    "window_values",
    "with_times",
]
