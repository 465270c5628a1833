"""The lean record decoder returns what kafka-python's own decoder returns (real broker)."""

from __future__ import annotations

import uuid
from typing import Any

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
