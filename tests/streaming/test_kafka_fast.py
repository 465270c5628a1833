"""The lean record decoder returns what kafka-python's own decoder returns: on record
batches built with kafka-python's public builder, and read from a real broker. Keys and
headers are skipped by the lean decoder (the stream job reads offset, timestamp, value):
the batches carry them so that skipping them by length is what is tested."""

from __future__ import annotations

import logging
import struct
import uuid
from typing import Any

import pytest

from featureline.settings import Settings


def _read_all(settings: Settings, topic: str, expected: int) -> list[tuple[int, int, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                             enable_auto_commit=False, max_poll_records=50)  # fmt: skip
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    consumer.seek(tp, 3)  # from inside a batch: records before the position are skipped
    out: list[tuple[int, int, Any]] = []
    for _ in range(100):
        for msgs in consumer.poll(timeout_ms=500).values():
            out += [(m.offset, m.timestamp, m.value) for m in msgs]
        if len(out) >= expected - 3:
            break
    consumer.close()
    return out


def test_lean_decoder_matches_kafka_python(stack: Settings) -> None:
    from kafka import KafkaProducer

    from featureline.cli.devstack import ensure_topic
    from featureline.streaming import kafka_fast

    topic = f"fast{uuid.uuid4().hex[:8]}"
    ensure_topic(stack, topic, 1)
    n = 0
    for compression in (None, "lz4"):
        producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=20,
                                 compression_type=compression)  # fmt: skip
        for i in range(150):
            producer.send(
                topic, partition=0, timestamp_ms=1_700_000_000_000 + i,
                key=f"k{i}".encode() if i % 3 == 0 or i % 17 == 0 else None,
                value=None if i % 17 == 0 else f"v{i}-{'x' * (i % 40)}".encode(),
                headers=[("h", b"1"), ("e", b"")] if i % 5 == 0 else None,
            )  # fmt: skip
            n += 1
        producer.flush()
        producer.close()
    kafka_fast.uninstall()
    want = _read_all(stack, topic, n)
    kafka_fast.install()
    try:
        got = _read_all(stack, topic, n)
    finally:
        kafka_fast.uninstall()
    assert len(want) == n - 3
    assert got == want


# Record batches built with kafka-python's public builder, decoded by both paths (no broker).
def _batch(magic: int, codec: int, base: int, n: int, ts0: int) -> bytearray:
    from kafka.record.memory_records import MemoryRecordsBuilder

    builder = MemoryRecordsBuilder(magic=magic, compression_type=codec, batch_size=1 << 20, offset=base)
    for i in range(n):
        key = f"k{i}".encode() if i % 3 == 0 else None
        value = None if i % 7 == 6 else f"v{base + i}-{'x' * (i % 40)}".encode()
        headers = [("h", b"1"), ("e", b"")] if i % 5 == 0 and magic == 2 else []
        assert builder.append(ts0 + 3 * i, key, value, headers) is not None
    builder.close()
    return bytearray(builder.buffer())


def _with_attributes(batch: bytearray, bits: int) -> bytearray:
    """Sets attribute bits (control batch, log-append time) and recomputes the CRC,
    which covers the batch from its attributes on (KIP-98's v2 layout)."""
    from kafka.record.default_records import DefaultRecordBatch as B
    from kafka.record.util import calc_crc32c

    attrs = struct.unpack_from(">h", batch, B.ATTRIBUTES_OFFSET)[0] | bits
    struct.pack_into(">h", batch, B.ATTRIBUTES_OFFSET, attrs)
    struct.pack_into(">I", batch, B.CRC_OFFSET, calc_crc32c(memoryview(batch)[B.ATTRIBUTES_OFFSET :]))
    return batch


def _records_buffer() -> bytes:
    from kafka.record.default_records import DefaultRecordBatch as B

    parts = [
        _batch(2, B.CODEC_NONE, 0, 20, 1_700_000_000_000),
        _batch(2, B.CODEC_GZIP, 20, 30, 1_700_000_001_000),
        _with_attributes(_batch(2, B.CODEC_NONE, 50, 1, 1_700_000_002_000), B.CONTROL_MASK),
        _batch(2, B.CODEC_LZ4, 51, 40, 1_700_000_003_000),
        _with_attributes(_batch(2, B.CODEC_NONE, 91, 5, 1_700_000_004_000), B.TIMESTAMP_TYPE_MASK),
        _batch(1, B.CODEC_NONE, 96, 4, 1_700_000_005_000),  # message format v1
    ]
    return b"".join(bytes(p) for p in parts)


def _decode(buffer: bytes, fetch_offset: int) -> tuple[list[tuple[int, int, Any]], int]:
    from kafka import TopicPartition
    from kafka.consumer.fetcher import Fetcher
    from kafka.record import MemoryRecords

    part = Fetcher.PartitionRecords(fetch_offset, TopicPartition("t", 0), MemoryRecords(buffer))
    records = part.take()
    return [(r.offset, r.timestamp, r.value) for r in records], part.next_fetch_offset


def test_both_decoders_read_the_same_built_batches() -> None:
    from kafka.record import MemoryRecords

    from featureline.streaming import kafka_fast

    buffer = _records_buffer()
    # Every record, keys and headers included, as kafka-python's public batch API reads it.
    everything: list[tuple[int, Any, Any, list[Any]]] = []
    records, batch = MemoryRecords(buffer), None
    while (batch := records.next_batch()) is not None:
        if not getattr(batch, "is_control_batch", False):
            everything += [(r.offset, r.key, r.value, list(r.headers or [])) for r in batch]
    assert any(h for *_, h in everything) and any(k for _, k, _, _ in everything)
    kafka_fast.uninstall()
    for fetch_offset in (0, 3, 60):
        want = _decode(buffer, fetch_offset)
        assert kafka_fast.install()
        try:
            got = _decode(buffer, fetch_offset)
        finally:
            kafka_fast.uninstall()
        assert got == want
        assert [o for o, _, _ in want[0]] == [o for o, *_ in everything if o >= fetch_offset]
        assert want[1] == 100  # after the last batch, past the control record's offset 50
    # Log-append time: every record of that batch carries the batch's max timestamp.
    assert {t for o, t, _ in _decode(buffer, 0)[0] if 91 <= o < 96} == {1_700_000_004_000 + 12}


def test_another_kafka_python_version_keeps_the_public_decoder(caplog: pytest.LogCaptureFixture) -> None:
    from kafka.consumer.fetcher import Fetcher

    from featureline.streaming import kafka_fast

    kafka_fast.uninstall()
    original = Fetcher.PartitionRecords._unpack_records
    caplog.set_level(logging.WARNING, logger=kafka_fast.__name__)
    kafka_fast._warned = False  # type: ignore[attr-defined]
    assert kafka_fast.supported("3.0.12") and not kafka_fast.supported("3.1.0")
    assert not kafka_fast.install("2.0.2")
    assert not kafka_fast.install("3.1.0")
    assert Fetcher.PartitionRecords._unpack_records is original
    warnings = [r for r in caplog.records if "not a version" in r.getMessage()]
    assert len(warnings) == 1  # once per process
    buffer = _records_buffer()
    assert _decode(buffer, 0)[0][0] == (0, 1_700_000_000_000, b"v0-")
