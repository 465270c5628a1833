"""`check_sent`: the worker commits input offsets only if every score record it flushed
was written. kafka-python's flush() returns once each record is acknowledged *or
failed*, so the futures are checked (kafka-python's own future classes here)."""

from __future__ import annotations

import threading

import pytest
from kafka.errors import MessageSizeTooLargeError
from kafka.producer.future import FutureProduceResult, FutureRecordMetadata
from kafka.structs import TopicPartition

from featureline.errors import ServiceUnavailableError
from featureline.serving_api.workers import worker
from featureline.serving_api.workers.worker import check_sent


def _batch(n: int) -> tuple[FutureProduceResult, list[FutureRecordMetadata]]:
    """A produce request of n records, as KafkaProducer.send builds them."""
    produce = FutureProduceResult(TopicPartition("scores", 0))
    return produce, [FutureRecordMetadata(produce, i, 0, None, 4, 40, 0) for i in range(n)]


def test_records_the_broker_acknowledged_pass() -> None:
    produce, records = _batch(3)
    produce.success((100, -1, None))
    check_sent([records, []])


def test_a_record_the_broker_refused_stops_the_commit() -> None:
    written, ok = _batch(2)
    written.success((0, -1, None))
    refused, lost = _batch(2)
    refused.failure(MessageSizeTooLargeError("record too large"))
    with pytest.raises(ServiceUnavailableError, match="MessageSizeTooLarge.*not committed past it"):
        check_sent([ok, lost])


def test_a_record_not_done_after_the_flush_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "SEND_CHECK_TIMEOUT_S", 0.2)
    late, records = _batch(1)
    threading.Timer(0.05, late.success, [(7, -1, None)]).start()
    check_sent([records])
    _, never = _batch(1)
    with pytest.raises(ServiceUnavailableError, match="Timeout"):
        check_sent([never])
