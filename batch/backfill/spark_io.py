"""Spark reads of raw events and idempotent partition writes (any Hadoop file system).

A backfill replaces whole `date=` partitions: Spark's dynamic partition overwrite
replaces each date it writes, and the dates of the range that got no rows are deleted,
so a re-run over the same range leaves exactly one copy of every row, and a re-run
after events were removed does not keep stale rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from featureline.batch import spark_jvm
from featureline.batch.backfill.events import CREATED_US, TS_US, EventColumns
from featureline.offline import KAFKA_OFFSET, KAFKA_PARTITION

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DATE = "date"


def path_exists(spark: SparkSession, path: Path | str) -> bool:
    """Local, HDFS or object-store paths alike (through Spark's Hadoop FileSystem)."""
    return spark_jvm.path_exists(spark, str(path))


def read_events(
    spark: SparkSession,
    base: Path,
    cols: EventColumns,
    start_us: int,
    end_us: int,
    days: list[str],
) -> DataFrame | None:
    """Raw events with start <= ts < end (only `days` partitions are listed), with the
    int64 columns `_ts_us` and `_created_us`; None when the source does not exist."""
    from pyspark.sql import functions as F

    if not path_exists(spark, base):
        return None
    df = spark.read.parquet(str(base))
    for file_name, ours in cols.renames:  # Feast's field_mapping
        df = df.withColumnRenamed(file_name, ours)
    names = set(df.columns)
    wanted = [*cols.join_keys, cols.timestamp, *cols.values]
    extra = [c for c in (cols.created, KAFKA_PARTITION, KAFKA_OFFSET, "txn_id") if c in names]
    if DATE in names:
        df = df.where(F.date_format(F.col(DATE), "yyyy-MM-dd").isin(days))
    ts_us = F.unix_micros(F.col(cols.timestamp))
    df = df.where((ts_us >= start_us) & (ts_us < end_us))
    created = (
        F.coalesce(F.unix_micros(F.col(cols.created)), F.lit(-1))
        if cols.created and cols.created in names
        else F.lit(-1).cast("long")
    )
    selected = list(dict.fromkeys(wanted + extra))
    return df.select(*selected, ts_us.alias(TS_US), created.alias(CREATED_US))


def dedupe_spark(df: DataFrame) -> DataFrame:
    """One row per Kafka identity (featureline's `dedupe_events`, for whole-table Spark
    jobs): the copy with the smallest created time; rows with offset < 0 all kept."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if KAFKA_OFFSET not in df.columns:
        return df
    from_kafka = F.coalesce(F.col(KAFKA_OFFSET), F.lit(-1)) >= 0
    window = Window.partitionBy(KAFKA_PARTITION, KAFKA_OFFSET).orderBy(CREATED_US)
    ranked = df.where(from_kafka).withColumn("_copy", F.row_number().over(window))
    first = ranked.where(F.col("_copy") == 1).drop("_copy")
    return first.unionByName(df.where(~from_kafka))


class DayCounts:
    """A Spark accumulator of rows per `date` written by mapInArrow tasks.

    Read on the driver after the write: one Spark job per output instead of a count
    job plus the write. (A retried task adds its rows twice: the counts are a report,
    the set of days - what partition replacement relies on - stays exact.)
    """

    def __init__(self, spark: SparkSession) -> None:
        from pyspark.accumulators import AccumulatorParam

        class _Param(AccumulatorParam):
            def zero(self, value: dict[str, int]) -> dict[str, int]:
                return {}

            def addInPlace(self, a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
                for day, n in b.items():
                    a[day] = a.get(day, 0) + n
                return a

        self.accumulator = spark.sparkContext.accumulator({}, _Param())

    @property
    def value(self) -> dict[str, int]:
        return dict(self.accumulator.value)


def write_days(df: DataFrame, output: Path, days: list[str], counts: DayCounts | None = None) -> int:
    """Replace the date partitions `days` of `output` with `df`'s rows; returns rows.

    With `counts` (filled by the tasks that produce `df`) the write is the only job;
    without, `df` is cached and counted per date first.
    """
    from pyspark import StorageLevel

    spark = df.sparkSession
    if counts is None:
        df = df.persist(StorageLevel.MEMORY_AND_DISK)
    try:
        written: dict[str, int] = {}
        if counts is None:
            written = {r[0]: r[1] for r in df.groupBy(DATE).count().collect()}
        if counts is not None or written:
            (
                df.write.mode("overwrite")
                .option("partitionOverwriteMode", "dynamic")
                .option("compression", "zstd")
                .partitionBy(DATE)
                .parquet(str(output))
            )
        if counts is not None:
            written = counts.value
        _delete_days(spark, output, [d for d in days if d not in written])
        return int(sum(written.values()))
    finally:
        if counts is None:
            df.unpersist()


def _delete_days(spark: SparkSession, output: Path, days: list[str]) -> None:
    """Remove stale partitions of range days that got no rows this time."""
    for day in days:
        spark_jvm.delete_tree(spark, f"{output}/{DATE}={day}")
