"""The dead-letter topic `<topic>.dlq`: the raw bytes, the error, and where they came from.

Value: the message's raw bytes, unchanged. Key: "<topic>/<partition>/<offset>" (unique
per source message, so a consumer can drop the rare duplicate of a crash between the
send and the online commit). Headers: error, topic, partition, offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from featureline.streaming.batches import DeadLetter

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    return topic + DLQ_SUFFIX


class DeadLetterQueue:
    def __init__(self, producer: Any) -> None:
        self._producer = producer

    @classmethod
    def connect(cls, bootstrap: str, options: dict[str, Any] | None = None) -> DeadLetterQueue:
        from kafka import KafkaProducer

        return cls(KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all", **(options or {})))

    def send(self, letters: Sequence[DeadLetter]) -> None:
        """Send and wait until the broker has them (they must not be lost once the
        online watermark moves past their offsets)."""
        if not letters:
            return
        for d in letters:
            self._producer.send(
                dlq_topic(d.topic),
                key=f"{d.topic}/{d.partition}/{d.offset}".encode(),
                value=d.raw if d.raw is not None else b"",
                headers=[
                    ("error", d.error.encode()),
                    ("topic", d.topic.encode()),
                    ("partition", str(d.partition).encode()),
                    ("offset", str(d.offset).encode()),
                ],
            )
        self._producer.flush()

    def close(self) -> None:
        self._producer.close()
