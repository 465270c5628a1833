"""The values that travel through the pipeline: one Beam element is one batch.

Beam's per-element cost is tens of microseconds in the Python SDK, so elements are
batches of up to thousands of Kafka messages from one partition, in offset order.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass(frozen=True)
class RawBatch:
    """Consecutive messages of one partition as read: offsets ascending."""

    topic: str
    partition: int
    offsets: list[int]
    values: list[bytes | None]
    timestamps_ms: list[int]
    # The partition's end offset seen by the reader when it fetched this batch.
    high_watermark: int = -1

    @property
    def first_offset(self) -> int:
        return self.offsets[0]

    @property
    def last_offset(self) -> int:
        return self.offsets[-1]

    def __len__(self) -> int:
        return len(self.offsets)


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be used, with why (goes to `<topic>.dlq`)."""

    topic: str
    partition: int
    offset: int
    raw: bytes | None
    error: str


@dataclass(frozen=True)
class ParsedBatch:
    """A RawBatch after parsing: valid rows as a typed Arrow table (schema fields +
    created + kafka_partition + kafka_offset), and the messages that failed."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    table: pa.Table
    dead: list[DeadLetter] = field(default_factory=list)
    messages: int = 0
    high_watermark: int = -1
    # The batch's messages as read (offsets ascending), kept so that an event a later
    # step refuses (a view's udf) reaches the DLQ with its bytes unchanged.
    raw_offsets: list[int] = field(default_factory=list)
    raw_values: list[bytes | None] = field(default_factory=list)
    # Data-quality findings (featureline.expectations): rows by (view, field, rule,
    # action), action "count" (applied anyway) or "dead_letter" (in `dead`).
    violations: dict[tuple[str, ...], int] = field(default_factory=dict)

    def raw_value(self, offset: int) -> bytes | None:
        i = bisect_left(self.raw_offsets, offset)
        if i < len(self.raw_offsets) and self.raw_offsets[i] == offset:
            return self.raw_values[i]
        return None
