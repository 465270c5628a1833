"""The inference worker: a Kafka topic of transactions in, a Kafka topic of scores out.

    Kafka (in_topic) -> consumer thread: parse, bad messages to <in_topic>.dlq
      -> ScoringPipeline (asyncio): dynamic batches -> GetOnlineTensor (4 in flight)
      -> model -> score records -> Kafka (out_topic) -> offsets committed

Partitions are assigned by hand (every partition of the topic), not by joining a
consumer group: one worker reads them all (a join costs ~2 s on Tansu; the stream job's
group mode, streaming/group.py, shows how several would share them). Offsets are still committed under
`group_id` (OffsetCommit without a generation), after the scores they cover are
flushed to Kafka and acknowledged (a score the broker refused stops the commits), so
a crash re-scores at most the last second of requests and never skips one
(at-least-once; score records carry txn_id, so a reader can drop repeats).

Before reading anything the worker checks that the model was trained on the repo's
current definitions (`ModelMismatchError`, exit 2) and that the serving API serves
the model's columns in the model's order.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from featureline.config import kafka_config
from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.repo import load_repo
from featureline.serving_api.tls import ClientTls
from featureline.serving_api.workers.fingerprint import service_fingerprint
from featureline.serving_api.workers.layout import FeatureLayout, feature_layout
from featureline.serving_api.workers.messages import CommitTracker, Rejected, ScoringRequest, parse_request
from featureline.serving_api.workers.model import FraudMLP, ModelMeta
from featureline.serving_api.workers.pipeline import PipelineConfig, ScoredBatch
from featureline.settings import Settings
from featureline.specs import RepoSpec

# Scores are flushed and offsets committed at most this often: a crash re-scores up
# to ~1 s of requests; committing per batch would add a round trip per batch.
COMMIT_INTERVAL_S = 1.0
# Requests held between the consumer and the pipeline: 4 polls of 2,000 messages.
QUEUE_POLLS = 4
MAX_POLL_RECORDS = 2000
# A flushed record's future is done; in the rare case it is not (the producer split
# its batch), how long the commit waits for it before calling it lost.
SEND_CHECK_TIMEOUT_S = 30.0


class ModelMismatchError(BadInputError):
    """The model was trained on other definitions than the repo's (exit 2)."""


@dataclass(frozen=True)
class WorkerConfig:
    model: Path
    device: str = "cpu"
    in_topic: str = "transactions.scoring"
    out_topic: str = "transactions.scores"
    serving: str = ""  # gRPC host:port; empty: 127.0.0.1:<settings.grpc_port>
    group_id: str = "featureline-worker"
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    deadline_s: float = 2.0
    connections: int = 2  # TCP connections to the serving API (see AsyncTensorClient)
    # Stop after this many requests (scored or rejected), or after this long without
    # a message: for the demo and tests; a production worker runs until signalled.
    max_requests: int | None = None
    idle_exit_s: float | None = None
    tls: ClientTls | None = None  # a TLS serving API (`featureline worker --serving-ca ...`)

    @property
    def dlq_topic(self) -> str:
        return f"{self.in_topic}.dlq"


@dataclass
class WorkerStats:
    scored: int = 0
    rejected: int = 0
    batches: int = 0
    first_received_ns: int | None = None  # the first scored request entered the worker
    last_done_ns: int = 0  # the last score existed

    def add(self, scored: ScoredBatch) -> None:
        self.scored += len(scored.requests)
        self.batches += 1
        first = min(r.received_ns for r in scored.requests)
        if self.first_received_ns is None or first < self.first_received_ns:
            self.first_received_ns = first
        self.last_done_ns = max(self.last_done_ns, scored.done_ns)

    def summary(self) -> dict[str, Any]:
        """Rate over the span from the first request received to the last score (the
        worker's start-up, Kafka connections and the model load are not in it)."""
        span_s = (self.last_done_ns - (self.first_received_ns or self.last_done_ns)) / 1e9
        return {
            "scored": self.scored,
            "rejected": self.rejected,
            "batches": self.batches,
            "seconds": round(span_s, 3),
            "scored_per_s": round(self.scored / span_s, 1) if span_s > 0 else None,
        }


def check_model(repo: RepoSpec, meta: ModelMeta, path: Path) -> FeatureLayout:
    """The model's layout if it was trained on the repo's current definitions."""
    if meta.service not in repo.services:
        raise ModelMismatchError(
            f"model {str(path)!r} was trained for feature service {meta.service!r}, which "
            f"the repo no longer defines (it has: {', '.join(sorted(repo.services))})"
        )
    current = service_fingerprint(repo, meta.service)
    layout = feature_layout(repo, meta.service)
    if current != meta.fingerprint or layout.names != meta.columns:
        raise ModelMismatchError(
            f"model {str(path)!r} was trained on feature service {meta.service!r} with "
            f"definitions fingerprint {meta.fingerprint}, but the repo's definitions now "
            f"have fingerprint {current}; retrain it: featureline train --feature-service "
            f"{meta.service}"
        )
    return layout


def load_checked_model(
    settings: Settings, path: Path, device: str
) -> tuple[FraudMLP, ModelMeta, FeatureLayout]:
    from featureline.serving_api.workers.model import load_model

    model, meta = load_model(path, device)
    layout = check_model(load_repo(settings), meta, path)
    return model, meta, layout


class _Consumer(threading.Thread):
    """Polls Kafka, parses, hands lists of requests to the event loop; commits."""

    def __init__(self, worker: KafkaWorker, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="featureline-worker-consumer", daemon=True)
        self.w = worker
        self.loop = loop
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # reported by the driving loop, never lost
            self.error = exc
        finally:
            asyncio.run_coroutine_threadsafe(self.w.queue.put(None), self.loop)

    def _loop(self) -> None:
        w = self.w
        last_message = last_commit = time.monotonic()
        while not self.stop.is_set() and not w.enough():
            polled = w.consumer.poll(timeout_ms=100, max_records=MAX_POLL_RECORDS)
            now = time.monotonic()
            if polled:
                last_message = now
                self._hand_over(polled)
            elif w.config.idle_exit_s is not None and now - last_message > w.config.idle_exit_s:
                break
            if now - last_commit >= COMMIT_INTERVAL_S:
                w.commit()
                last_commit = now

    def _hand_over(self, polled: dict[Any, list[Any]]) -> None:
        w = self.w
        now_ns = time.monotonic_ns()
        good: list[ScoringRequest] = []
        for tp, records in polled.items():
            for rec in records:
                item = parse_request(rec.value, w.fields, now_ns, tp.partition, rec.offset)
                if isinstance(item, Rejected):
                    w.reject(item, rec.value)
                else:
                    good.append(item)
        if good:
            w.counted += len(good)
            asyncio.run_coroutine_threadsafe(w.queue.put(good), self.loop).result()


class KafkaWorker:
    """Owns the Kafka clients, the pipeline and the commit bookkeeping."""

    def __init__(
        self, settings: Settings, config: WorkerConfig, layout: FeatureLayout, meta: ModelMeta
    ) -> None:
        self.settings = settings
        self.config = config
        self.layout = layout
        self.meta = meta
        self.fields = list(layout.entity_fields)
        self.stats = WorkerStats()
        self.counted = 0  # requests handed over or rejected (for max_requests)
        self.tracker = CommitTracker()
        # Futures of the records (scores, dead letters) sent since the last commit: a
        # flush returns once every record is acknowledged *or failed* (delivery timeout,
        # a non-retriable broker error), so a commit must check them, or it would commit
        # offsets whose scores were never written.
        self._sent: list[list[Any]] = []
        self.send_error: BaseException | None = None
        self._lock = threading.Lock()  # tracker, _sent: filled on the loop, taken by consumer
        self.consumer, self.producer, self.partitions = _kafka_clients(settings, config)
        self.queue: asyncio.Queue[list[ScoringRequest] | None] = asyncio.Queue(QUEUE_POLLS)

    def enough(self) -> bool:
        limit = self.config.max_requests
        return limit is not None and self.counted >= limit

    def reject(self, item: Rejected, raw: bytes) -> None:
        self.counted += 1
        self.stats.rejected += 1
        headers = [("error", item.reason.encode()), ("offset", f"{item.partition}:{item.offset}".encode())]
        future = self.producer.send(self.config.dlq_topic, value=raw, headers=headers)
        with self._lock:
            self._sent.append([future])

    def open_batch(self, requests: list[ScoringRequest]) -> int:
        with self._lock:
            return self.tracker.open(requests)

    def write_scores(self, scored: ScoredBatch) -> None:
        from featureline.serving_api.workers.messages import score_records

        records = score_records(scored.requests, scored.scores, self.meta.fingerprint, scored.done_ns)
        topic = self.config.out_topic
        send = self.producer.send
        futures = [
            send(topic, key=request.txn_id.encode(), value=record)
            for request, record in zip(scored.requests, records, strict=True)
        ]
        self.stats.add(scored)
        with self._lock:
            self._sent.append(futures)
            self.tracker.done(scored.batch_id)

    def commit(self) -> None:
        """Flush the scores written so far, then commit the offsets they cover, unless
        one of them failed to be written: then raise, and never commit again (a later
        commit would cover the lost scores; the next run re-scores them)."""
        from kafka import TopicPartition
        from kafka.structs import OffsetAndMetadata

        if self.send_error is not None:
            return
        with self._lock:
            # Every batch in `ready` added its futures before it was marked done.
            ready = self.tracker.take()
            sent, self._sent = self._sent, []
        if not ready and not sent:
            return
        self.producer.flush()
        try:
            check_sent(sent)
        except ServiceUnavailableError as exc:
            self.send_error = exc
            raise
        if not ready:
            return
        topic = self.config.in_topic
        self.consumer.commit(
            {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in ready.items()}
        )

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()
        self.consumer.close()


def check_sent(sent: list[list[Any]]) -> None:
    """Raise if one of these flushed records (kafka-python futures) was not written."""
    for futures in sent:
        for future in futures:
            if future.succeeded():
                continue
            try:  # not done after the flush (the producer split its batch): wait for it
                future.get(timeout=SEND_CHECK_TIMEOUT_S)
            except Exception as exc:
                raise ServiceUnavailableError(
                    f"a record could not be written to Kafka ({exc!r}); offsets are not "
                    "committed past it: a restarted worker scores it again"
                ) from exc


def _kafka_clients(settings: Settings, config: WorkerConfig) -> tuple[Any, Any, list[int]]:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.errors import KafkaError

    security = kafka_config(settings).client_options()  # SASL/TLS from FEATURELINE_KAFKA_*
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=config.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
            **security,
        )
        partitions = sorted(consumer.partitions_for_topic(config.in_topic) or [])
        if not partitions:
            consumer.close()
            raise BadInputError(f"topic {config.in_topic!r} does not exist on {settings.kafka_bootstrap}")
        consumer.assign([TopicPartition(config.in_topic, p) for p in partitions])
        # linger 5 ms: score records leave in batches of hundreds, not one request each.
        producer = KafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, batch_size=256 * 1024, **security
        )
    except KafkaError as exc:
        raise ServiceUnavailableError(
            f"Kafka does not answer on {settings.kafka_bootstrap} ({exc}); "
            "start the dev stack with `featureline dev up`"
        ) from exc
    return consumer, producer, partitions


async def _drive(worker: KafkaWorker, pipeline: Any, consumer: _Consumer) -> None:
    while True:
        wait = pipeline.time_until_due()
        try:
            item = await asyncio.wait_for(worker.queue.get(), wait)
        except TimeoutError:
            await pipeline.tick()
            continue
        if item is None:
            break
        await pipeline.submit(item)
    await pipeline.drain()
    if consumer.error is not None:
        raise consumer.error


async def run_worker_async(settings: Settings, config: WorkerConfig) -> WorkerStats:
    from featureline.serving_api.typed_client import AsyncTensorClient
    from featureline.serving_api.workers.model import Scorer, single_threaded_cpu
    from featureline.serving_api.workers.pipeline import ScoringPipeline

    model, meta, layout = load_checked_model(settings, config.model, config.device)
    single_threaded_cpu()
    target = config.serving or f"127.0.0.1:{settings.grpc_port}"
    async with AsyncTensorClient(
        target, meta.service, timeout_s=config.deadline_s, connections=config.connections, tls=config.tls
    ) as client:
        await client.expect(layout.names)
        scorer = Scorer(model, config.device)
        worker = KafkaWorker(settings, config, layout, meta)
        pipeline = ScoringPipeline(
            client.fetch, scorer.score, worker.fields, worker.write_scores, config.pipeline,
            on_open=worker.open_batch,
        )  # fmt: skip
        consumer = _Consumer(worker, asyncio.get_running_loop())
        _stop_on_signals(consumer)
        consumer.start()
        try:
            await _drive(worker, pipeline, consumer)
        finally:
            await _stop_consumer(worker, consumer)
            try:
                worker.commit()
            finally:
                worker.close()
    return worker.stats


async def _stop_consumer(worker: KafkaWorker, consumer: _Consumer) -> None:
    """Stop the consumer thread; requests it still hands over are dropped unscored
    (and uncommitted: the next run reads them again). Draining the queue matters: the
    thread may be blocked putting into it."""
    consumer.stop.set()
    while consumer.is_alive():
        while not worker.queue.empty():
            worker.queue.get_nowait()
        await asyncio.sleep(0.01)


def _stop_on_signals(consumer: _Consumer) -> None:
    """First SIGINT/SIGTERM: stop reading, score what was read, commit, exit. A second
    one exits at once (a drain can wait on an unreachable serving API); nothing is
    lost either way: offsets past the last written score are not committed."""
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if consumer.stop.is_set():
            print("worker: interrupted again, exiting without draining", file=sys.stderr, flush=True)
            os._exit(130)
        print("worker: stopping: scoring what was read, then committing", file=sys.stderr, flush=True)
        consumer.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests)
            return


def run_worker(settings: Settings, config: WorkerConfig) -> WorkerStats:
    """Run until signalled (or max_requests / idle_exit_s); the worker's figures."""
    return asyncio.run(run_worker_async(settings, config))
