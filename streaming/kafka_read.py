"""Our Kafka reader for the DirectRunner: an unbounded splittable DoFn on kafka-python.

One element per (topic, partition, start offset); its restriction is the offset range
[start, inf). Each call reads for up to `budget_s` (so partitions take turns and none
waits long), emits one RawBatch of what arrived (up to about `max_records` messages),
claims its last offset, then defers the rest (`defer_remainder`): the runner calls again with the
range starting after the last claimed offset. When `STOP` is set (SIGTERM), the
restriction is closed at the last claimed offset and the pipeline finishes.

Each reader is assigned its partition directly (no group); which partitions this
process owns is fixed when the pipeline starts: all, a `--shard`, or the consumer
group's assignment (streaming.group, which sets STOP on a rebalance and starts a new
pipeline). Offsets are committed by the sink after both sinks flushed
(streaming.offsets).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.restriction_trackers import OffsetRange, OffsetRestrictionTracker
from apache_beam.transforms.core import RestrictionProvider
from apache_beam.utils.timestamp import Duration

from featureline.streaming.batches import RawBatch

# Set by the CLI's SIGTERM/SIGINT handler: readers close their ranges, sinks flush.
STOP = threading.Event()
_END = 2**62  # an unbounded range's end
_DRAIN = -1  # claimed to close the range at the last claimed offset
DEFAULT_MAX_RECORDS = 20_000
DEFAULT_BUDGET_S = 0.025


class KafkaOffsetTracker(OffsetRestrictionTracker):
    """OffsetRestrictionTracker that can be closed early: claiming _DRAIN shrinks the
    range to what was claimed, so the runner sees it done and the pipeline can end."""

    def try_claim(self, position: int) -> bool:
        if position == _DRAIN:
            last = self._last_claim_attempt
            end = self._range.start if last is None else last + 1
            self._range = OffsetRange(self._range.start, end)
            return False
        return bool(super().try_claim(position))


class _Offsets(RestrictionProvider):
    def initial_restriction(self, element: tuple[str, int, int]) -> OffsetRange:
        return OffsetRange(element[2], _END)

    def create_tracker(self, restriction: OffsetRange) -> KafkaOffsetTracker:
        return KafkaOffsetTracker(restriction)

    def restriction_size(self, element: Any, restriction: OffsetRange) -> int:
        return 1  # unknown; the runner must not try to balance on it

    def split(self, element: Any, restriction: OffsetRange) -> Any:
        yield restriction  # one reader per partition keeps offsets in order


class PartitionReader:
    """A kafka-python consumer assigned to one partition."""

    def __init__(
        self, bootstrap: str, topic: str, partition: int, offset: int, max_records: int,
        options: dict[str, Any] | None = None,
    ):  # fmt: skip
        from kafka import KafkaConsumer, TopicPartition

        from featureline.streaming import kafka_fast

        kafka_fast.install()
        self.tp = TopicPartition(topic, partition)
        self.max_records = max_records
        self.consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            # Big fetches: kafka-python costs ~7 us per message, requests are cheap.
            fetch_max_bytes=64 << 20,
            max_partition_fetch_bytes=16 << 20,
            max_poll_records=max_records,
            fetch_max_wait_ms=50,
            **(options or {}),  # security (featureline.config.KafkaConfig)
        )
        self.consumer.assign([self.tp])
        self.seek(offset)

    def seek(self, offset: int) -> None:
        self.consumer.seek(self.tp, offset)
        self.position = offset

    def read(self, timeout_ms: int) -> RawBatch | None:
        records = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        msgs = records.get(self.tp)
        if not msgs:
            return None
        self.position = msgs[-1].offset + 1
        return RawBatch(
            self.tp.topic,
            self.tp.partition,
            [m.offset for m in msgs],
            [m.value for m in msgs],
            [m.timestamp for m in msgs],
            self.consumer.highwater(self.tp) or -1,
        )

    def close(self) -> None:
        self.consumer.close()


def merge_batches(parts: list[RawBatch]) -> RawBatch:
    """Consecutive reads of one partition as one batch."""
    if len(parts) == 1:
        return parts[0]
    first, last = parts[0], parts[-1]
    return RawBatch(
        first.topic,
        first.partition,
        [o for p in parts for o in p.offsets],
        [v for p in parts for v in p.values],
        [t for p in parts for t in p.timestamps_ms],
        last.high_watermark,
    )


class ReadKafkaBatches(beam.DoFn):
    """(topic, partition, start offset) -> RawBatches, unbounded."""

    def __init__(
        self,
        bootstrap: str,
        max_records: int = DEFAULT_MAX_RECORDS,
        budget_s: float = DEFAULT_BUDGET_S,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.options = options or {}
        self.max_records = max_records
        self.budget_s = budget_s
        self._readers: dict[tuple[str, int], PartitionReader] = {}

    def setup(self) -> None:
        self._readers = {}

    def _reader(self, topic: str, partition: int, offset: int) -> PartitionReader:
        reader = self._readers.get((topic, partition))
        if reader is None:
            reader = PartitionReader(self.bootstrap, topic, partition, offset, self.max_records, self.options)
            self._readers[(topic, partition)] = reader
        elif reader.position != offset:
            reader.seek(offset)
        return reader

    def process(
        self,
        element: tuple[str, int, int],
        tracker: Any = beam.DoFn.RestrictionParam(_Offsets()),  # noqa: B008 (Beam's idiom)
    ) -> Any:
        topic, partition, _ = element
        reader = self._reader(topic, partition, tracker.current_restriction().start)
        deadline = time.monotonic() + self.budget_s
        # One batch per call: what arrives within the budget is merged, because each
        # batch has a fixed cost downstream (~5 ms: Arrow/numpy set-up per view, four
        # Redis round trips) that small polls (a few ms of data each) would multiply.
        parts: list[RawBatch] = []
        size = 0
        while not STOP.is_set() and size < self.max_records:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                break
            part = reader.read(left_ms)
            if part is not None:
                parts.append(part)
                size += len(part)
        if parts:
            batch = merge_batches(parts)
            if not tracker.try_claim(batch.last_offset):
                return
            yield batch
        if STOP.is_set():
            tracker.try_claim(_DRAIN)
            return
        tracker.defer_remainder(Duration.of(0))

    def teardown(self) -> None:
        for reader in self._readers.values():
            reader.close()
