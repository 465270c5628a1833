"""The Beam pipeline: Kafka -> parse -> Redis (tiles, latest values) + Parquet -> commit.

    Create[(topic, partition, start)] -> ReadKafkaBatches (SDF) -> ParseBatches
        -> ApplyBatches: views' udfs, DLQ, Redis (exactly once per offset), Parquet
           buffer (raw events, computed rows), commit offsets after both sinks flushed

Every element is a batch of one partition's messages (streaming.batches). On the
DirectRunner the whole chain is one fused stage in one process, so `ApplyBatches`
sees each partition's batches in offset order. `plan_stream` resolves which
partitions this process owns (all, a static shard, or a consumer-group assignment:
streaming.group), where each starts, and removes offline files a killed run left
uncommitted.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam

from featureline.config import RedisConfig, kafka_config, online_store, stream_bootstrap
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.expectations import expectations_of
from featureline.kafka_admin import ensure_topic
from featureline.online_store import open_store
from featureline.settings import Settings
from featureline.specs import RepoSpec, ViewSpec
from featureline.streaming import kafka_read
from featureline.streaming.batches import ParsedBatch, RawBatch
from featureline.streaming.dlq import DeadLetterQueue, dlq_topic
from featureline.streaming.metrics import TOTALS
from featureline.streaming.offsets import OffsetStore, StartFrom, group_id
from featureline.streaming.parquet_sink import DEFAULT_FLUSH_S, OfflineSink, remove_uncommitted
from featureline.streaming.parse import DEFAULT_MAX_FUTURE_S, BatchParser
from featureline.streaming.redis_sink import OnlineSink
from featureline.streaming.schema import SourceSchema, source_schema, stream_views
from featureline.streaming.udf import ViewInputs

# A batch whose online write failed (Redis down, a failover under way, too few replicas
# acknowledged) is retried, first after 50 ms, doubling up to 1 s: a Sentinel or cluster
# failover on a LAN takes ~2-5 s (down-after / node timeout, then the election), so the
# job catches up within ~1 s of the new primary, at <= ~20 failed tries per outage.
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 1.0


@dataclass(frozen=True)
class StreamPlan:
    """Everything the pipeline needs, resolved before it starts (picklable)."""

    project: str
    bootstrap: str  # the KafkaSources' servers, or FEATURELINE_KAFKA_HOST/_PORT when set
    redis: RedisConfig  # feature_store.yaml's online store (featureline.config)
    offline_dir: Path
    group: str
    schemas: dict[str, SourceSchema]
    views: dict[str, list[ViewSpec]]
    starts: dict[tuple[str, int], int]
    margin_s: int
    max_future_s: int = DEFAULT_MAX_FUTURE_S
    flush_s: float = DEFAULT_FLUSH_S
    max_records: int = kafka_read.DEFAULT_MAX_RECORDS
    removed_files: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    kafka_options: dict[str, Any] = field(default_factory=dict, repr=False)  # security
    java_options: dict[str, str] = field(default_factory=dict, repr=False)  # the same, for Java


def plan_stream(
    settings: Settings,
    repo: RepoSpec,
    *,
    start_from: StartFrom = "committed",
    only_views: list[str] | None = None,
    shard: tuple[int, int] = (0, 1),
    assigned: Collection[tuple[str, int]] | None = None,
    **overrides: Any,
) -> StreamPlan:
    """Resolve views, schemas and start offsets. With `shard` (i, n), only partitions
    p with p % n == i: n processes then share a topic, each owning its partitions
    (each partition keeps exactly one writer, which exactly-once relies on). With
    `assigned` (topic, partition)s, given by the consumer group (streaming.group),
    only those, each resumed at its committed offset (else `start_from`'s earliest
    or latest: a group member cannot replay from the earliest on its own)."""
    by_topic = stream_views(repo, only_views)
    if not by_topic:
        raise BadInputError(f"repo {settings.repo} defines no StreamFeatureView with a KafkaSource")
    for views in by_topic.values():
        for view in views:
            expectations_of(view)  # a tag it cannot read stops the job here, named
    kafka = kafka_config(settings)
    bootstrap = stream_bootstrap(
        kafka, {t: vs[0].stream_source.bootstrap_servers for t, vs in by_topic.items() if vs[0].stream_source}
    )
    kafka_options = kafka.client_options()
    redis = online_store(settings)
    store = OffsetStore(bootstrap, group_id(repo.project), kafka_options)
    offline = settings.resolved_offline_dir
    starts: dict[tuple[str, int], int] = {}
    removed = 0
    try:
        for topic in by_topic:
            for partition, offset in _starts(store, topic, start_from, shard, assigned).items():
                starts[(topic, partition)] = offset
                removed += remove_uncommitted(offline, topic, partition, offset, by_topic[topic])
            ensure_topic(settings, dlq_topic(topic), 1, bootstrap=bootstrap)
    finally:
        store.close()
    return StreamPlan(
        project=repo.project,
        bootstrap=bootstrap,
        redis=redis,
        kafka_options=kafka_options,
        java_options=kafka.java_options(),
        offline_dir=offline,
        group=group_id(repo.project),
        schemas={t: source_schema(vs) for t, vs in by_topic.items()},
        views=by_topic,
        starts=starts,
        margin_s=settings.tile_retention_margin_s,
        removed_files=removed,
        **overrides,
    )


def _starts(
    store: OffsetStore,
    topic: str,
    start_from: StartFrom,
    shard: tuple[int, int],
    assigned: Collection[tuple[str, int]] | None,
) -> dict[int, int]:
    """The partitions of `topic` this process owns, and where each starts."""
    if assigned is None:
        offsets = store.start_offsets(topic, start_from)
        return {p: off for p, off in offsets.items() if p % shard[1] == shard[0]}
    mine = sorted(p for t, p in assigned if t == topic)
    return store.resume_offsets(topic, mine, "latest" if start_from == "latest" else "earliest")


class ParseBatches(beam.DoFn):
    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan

    def setup(self) -> None:
        self._parsers = {
            t: BatchParser(
                s,
                max_future_s=self.plan.max_future_s,
                expectations=tuple(expectations_of(v) for v in self.plan.views[t]),
            )
            for t, s in self.plan.schemas.items()
        }

    def process(self, batch: RawBatch) -> Any:
        yield self._parsers[batch.topic].parse(batch)


class ApplyBatches(beam.DoFn):
    """The sinks: DLQ, Redis, Parquet; commits offsets once both sinks flushed."""

    def __init__(self, plan: StreamPlan) -> None:
        self.plan = plan

    def setup(self) -> None:
        plan = self.plan
        # Udfs are compiled here, once per view for the job's life.
        self._inputs = {t: ViewInputs(vs, plan.schemas[t].raw_arrow_schema()) for t, vs in plan.views.items()}
        self._redis = open_store(plan.redis)
        self._online = {
            t: OnlineSink(
                self._redis,
                plan.project,
                t,
                vs,
                margin_s=plan.margin_s,
                max_future_s=plan.max_future_s,
                key_ttl_s=plan.redis.key_ttl_s,
            )  # fmt: skip
            for t, vs in plan.views.items()
        }
        self._offline = {
            t: OfflineSink(plan.offline_dir, t, s.timestamp_field, views=plan.views[t], flush_s=plan.flush_s)
            for t, s in plan.schemas.items()
        }
        self._dlq = DeadLetterQueue.connect(plan.bootstrap, plan.kafka_options)
        self._offsets = OffsetStore(plan.bootstrap, plan.group, plan.kafka_options)

    def process(self, batch: ParsedBatch) -> Any:
        topic = batch.topic

        def send_dead(letters: list[Any]) -> None:
            self._dlq.send(letters)
            TOTALS.dead_letters(topic, len(letters))

        if batch.violations:
            TOTALS.expectations(batch.violations)
        views = self._inputs[topic].prepare(batch)
        result = self._apply_online(batch, views, send_dead)
        TOTALS.record(topic, result.applied, result.skipped, result.created_ms,
                      result.visible_ms, result.late)  # fmt: skip
        if batch.high_watermark >= 0:
            TOTALS.set_lag(topic, batch.partition, batch.high_watermark - batch.last_offset - 1)
        self._offline[topic].add(batch, views.tables)
        self._flush(everything=False)
        # The tile cache holds ~10^5-10^6 long-lived objects; without freezing them, each
        # full collection walks them all (measured: ~40 % of the job's time at 100k tiles).
        # Young cycles are collected first (cheap), so no cyclic garbage gets frozen;
        # frozen objects are still freed by reference counting.
        gc.collect(1)
        gc.freeze()
        return []

    def _apply_online(self, batch: ParsedBatch, views: Any, send_dead: Any) -> Any:
        """The batch to the online store, retried until it is written and durable.

        Nothing of a failed try is committed (the watermark and the Kafka offset move
        only after the whole batch and its WAIT succeeded) and the apply is exactly once
        per key (streaming.redis_sink), so a retry re-applies exactly what the store,
        maybe a replica promoted meanwhile, lacks. Retries go on while the store is
        unavailable (a job that died here would need a restart to resume); a drain
        (SIGTERM, a rebalance) ends them with the error, this batch uncommitted."""
        sink = self._online[batch.topic]
        delay, failures = RETRY_FIRST_S, 0
        while True:
            try:
                result = sink.apply(batch, views, send_dead)
            except ServiceUnavailableError as exc:
                failures += 1
                TOTALS.retried(1)
                if failures == 1:
                    print(f"stream: {batch.topic}:{batch.partition} offsets {batch.first_offset}-"
                          f"{batch.last_offset}: online write failed, retrying: {exc}",
                          file=sys.stderr, flush=True)  # fmt: skip
                if kafka_read.STOP.wait(delay):
                    raise
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            if failures:
                print(f"stream: {batch.topic}:{batch.partition} written after {failures} failed tries",
                      file=sys.stderr, flush=True)  # fmt: skip
            return result

    def _flush(self, everything: bool) -> None:
        for topic, sink in self._offline.items():
            parts = sink.pending() if everything else sink.due()
            commits = {p: off for p in parts if (off := sink.flush(p)) is not None}
            self._offsets.commit(topic, commits)

    def finish_bundle(self) -> None:
        # A bundle ends when a reader defers (every ~50 ms) or drains on SIGTERM.
        self._flush(everything=kafka_read.STOP.is_set())

    def teardown(self) -> None:
        self._flush(everything=True)
        self._dlq.close()
        self._offsets.close()


def build(pipeline: beam.Pipeline, plan: StreamPlan, portable: bool = False) -> None:
    raw = _portable_source(pipeline, plan) if portable else _direct_source(pipeline, plan)
    _ = raw | "Parse" >> beam.ParDo(ParseBatches(plan)) | "ApplyAndCommit" >> beam.ParDo(ApplyBatches(plan))


def _direct_source(pipeline: beam.Pipeline, plan: StreamPlan) -> Any:
    elements = [(t, p, off) for (t, p), off in sorted(plan.starts.items())]
    read = kafka_read.ReadKafkaBatches(plan.bootstrap, plan.max_records, options=plan.kafka_options)
    return pipeline | "Partitions" >> beam.Create(elements) | "ReadKafka" >> beam.ParDo(read)


def _portable_source(pipeline: beam.Pipeline, plan: StreamPlan) -> Any:
    """Beam's ReadFromKafka (a Java transform: needs the runner's expansion service),
    regrouped into per-partition batches. Not exercised here: no Java expansion
    service can be fetched on this machine."""
    from apache_beam.io.kafka import ReadFromKafka

    def to_batch(item: tuple[tuple[str, int], list[Any]]) -> RawBatch:
        (topic, partition), records = item
        records = sorted(records, key=lambda r: r.offset)
        return RawBatch(topic, partition, [r.offset for r in records],
                        [r.value for r in records], [r.timestamp for r in records])  # fmt: skip

    return (
        pipeline
        | "ReadFromKafka"
        >> ReadFromKafka(
            consumer_config={
                "bootstrap.servers": plan.bootstrap,
                "group.id": plan.group,
                **plan.java_options,
            },
            topics=sorted(plan.schemas),
            with_metadata=True,
        )
        | "ByPartition" >> beam.Map(lambda r: ((r.topic, r.partition), r))
        | "Batch" >> beam.GroupIntoBatches(plan.max_records, max_buffering_duration_secs=0.2)
        | "ToRawBatch" >> beam.Map(to_batch)
    )


def run(plan: StreamPlan, runner: str = "DirectRunner", extra_args: list[str] | None = None) -> None:
    """Run until STOP is set (SIGTERM) and every partition drained; blocks."""
    from apache_beam.options.pipeline_options import PipelineOptions

    portable = runner != "DirectRunner"
    args = [f"--runner={runner}", *(extra_args or [])]
    if portable:
        args.append("--streaming")
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
        build(pipeline, plan, portable=portable)
