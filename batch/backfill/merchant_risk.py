"""The merchant_risk batch view: chargeback rate over 30 days per merchant, daily.

For each UTC midnight T in (start, end], and each merchant with at least one
transaction in [T - 30 days, T):

    txn_count_30d       = transactions (one per Kafka identity) in that span
    chargeback_rate_30d = those labelled fraud (`is_fraud` = 1 in the generator's
                          `<offline>/labels/fraud_labels.parquet`, joined on txn_id)
                          / txn_count_30d

Rows are stamped event_timestamp = created = T (a snapshot "as of" midnight, so a
point-in-time join at t sees the last midnight before t) and partitioned by T's date.
The rate is one IEEE division of two exact integer counts, the same in Spark, pandas
and Python, so the offline value and the online value are bit-identical.

Spark does the work: daily counts per merchant, each day's counts fanned out to the
30 snapshots that include it, summed per (merchant, snapshot).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from featureline.errors import BadInputError
from featureline.semantics import US

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

WINDOW_DAYS = 30
WINDOW_S = WINDOW_DAYS * 86_400
DAY_US = 86_400 * US
LABELS_FILE = Path("labels") / "fraud_labels.parquet"
OUTPUT_COLUMNS = (
    "merchant_id",
    "chargeback_rate_30d",
    "txn_count_30d",
    "event_timestamp",
    "created",
    "date",
)


def labels_path(offline_dir: Path) -> Path:
    return offline_dir / LABELS_FILE


def snapshot_days(start_us: int, end_us: int) -> tuple[int, int]:
    """First and last snapshot day numbers (days since epoch) of midnights in (start, end]."""
    first = start_us // DAY_US + 1
    last = end_us // DAY_US
    return first, last


def merchant_risk_frame(
    spark: SparkSession, events: DataFrame, labels: Path, start_us: int, end_us: int
) -> DataFrame:
    """merchant_risk rows from deduplicated raw events (txn_id, merchant_id, and `_ts_us`)."""
    from pyspark.sql import functions as F

    from featureline.batch.backfill.spark_io import path_exists

    if not path_exists(spark, labels):
        raise BadInputError(
            f"merchant_risk needs fraud labels at {labels} (`featureline generate` writes them)"
        )
    first, last = snapshot_days(start_us, end_us)
    label_df = (
        spark.read.parquet(str(labels))
        .select("txn_id", F.col("is_fraud").cast("long").alias("is_fraud"))
        .groupBy("txn_id")
        .agg(F.max("is_fraud").alias("is_fraud"))
    )
    daily = (
        events.where(F.col("merchant_id").isNotNull())
        .select("txn_id", "merchant_id", F.floor(F.col("_ts_us") / DAY_US).alias("day"))
        .join(label_df, "txn_id", "left")
        .groupBy("merchant_id", "day")
        .agg(
            F.count(F.lit(1)).alias("n"),
            F.sum(F.coalesce(F.col("is_fraud"), F.lit(0))).alias("frauds"),
        )
    )
    snaps = daily.withColumn(
        "snap", F.explode(F.sequence(F.col("day") + 1, F.col("day") + WINDOW_DAYS))
    ).where(F.col("snap").between(first, last))
    totals = snaps.groupBy("merchant_id", "snap").agg(
        F.sum("n").alias("txn_count_30d"), F.sum("frauds").alias("frauds")
    )
    stamp = F.timestamp_seconds(F.col("snap") * 86_400)
    return totals.select(
        "merchant_id",
        (F.col("frauds").cast("double") / F.col("txn_count_30d").cast("double")).alias("chargeback_rate_30d"),
        F.col("txn_count_30d").cast("long").alias("txn_count_30d"),
        stamp.alias("event_timestamp"),
        stamp.alias("created"),
        F.date_format(stamp, "yyyy-MM-dd").alias("date"),
    )
