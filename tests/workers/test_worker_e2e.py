"""The worker on real services: Redis, the Kafka broker, `featureline serve`."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from benchmarks.worker.env import ServeProcess
from benchmarks.worker.synthetic import EntityDomain, request_rows
from featureline.errors import NotFoundError, ServiceUnavailableError
from featureline.serving_api.typed_client import ColumnMismatchError, TensorClient
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.serving_api.workers.model import Scorer, load_model
from featureline.serving_api.workers.pipeline import PipelineConfig
from featureline.serving_api.workers.train import TrainResult
from featureline.serving_api.workers.worker import WorkerConfig, run_worker
from featureline.settings import Settings
from featureline.specs import RepoSpec, resolve_features

SERVICE = "fraud_training_v1"


def test_the_tensor_columns_are_the_feature_services_order(
    served: ServeProcess, workers_repo: RepoSpec, layout: FeatureLayout, online: EntityDomain
) -> None:
    defined = [
        f.output_name(True)
        for f in resolve_features(workers_repo, service=SERVICE, full_feature_names=True)
        if f.dtype != "string"
    ]
    rows = request_rows(layout, online, 5)
    with TensorClient(served.grpc_target, SERVICE, timeout_s=5.0) as client:
        assert list(client.expect(defined).names) == defined
        tensor = client.fetch({"user_id": [r[0] for r in rows], "merchant_id": [r[1] for r in rows]})
        values, mask = client.fetch_torch({"user_id": [1], "merchant_id": ["merchant_id-0"]})
    assert tensor.columns == defined == list(layout.names)
    assert tensor.values.shape == (5, len(defined))
    assert tensor.values.dtype == np.float32 and tensor.mask.dtype == bool
    assert values.dtype == torch.float32 and mask.dtype == torch.bool
    assert tuple(values.shape) == (1, len(defined))


def test_the_typed_client_fails_clearly(served: ServeProcess, layout: FeatureLayout) -> None:
    unknown = TensorClient(served.grpc_target, "no_such_service", timeout_s=5.0)
    with unknown, pytest.raises(NotFoundError, match="no_such_service"):
        unknown.fetch({"user_id": [1], "merchant_id": ["m"]})
    client = TensorClient(served.grpc_target, SERVICE, timeout_s=5.0)
    with client, pytest.raises(ColumnMismatchError, match="expected"):
        client.expect(list(layout.names)[::-1])
    from featureline.cli.devstack import free_port

    started = time.monotonic()
    nobody = TensorClient(f"127.0.0.1:{free_port()}", SERVICE, timeout_s=0.5)
    with nobody, pytest.raises(ServiceUnavailableError):
        nobody.fetch({"user_id": [1], "merchant_id": ["m"]})
    assert time.monotonic() - started < 2.0  # retries stay inside the deadline


def _established_to(port: int) -> int:
    """TCP connections in ESTABLISHED state towards `port` (/proc/net/tcp and tcp6:
    gRPC opens dual-stack sockets, listed in tcp6 even for 127.0.0.1)."""
    count = 0
    lines = [
        *Path("/proc/net/tcp").read_text().splitlines()[1:],
        *Path("/proc/net/tcp6").read_text().splitlines()[1:],
    ]
    for line in lines:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == port and fields[3] == "01":
            count += 1
    return count


def test_the_async_client_spreads_calls_over_its_connections(
    served: ServeProcess, layout: FeatureLayout, online: EntityDomain
) -> None:
    import asyncio

    from featureline.serving_api.typed_client import AsyncTensorClient

    port = int(served.grpc_target.rsplit(":", 1)[1])
    rows = request_rows(layout, online, 3)
    entities = {"user_id": [r[0] for r in rows], "merchant_id": [r[1] for r in rows]}

    async def fetch_all(connections: int) -> tuple[int, list[np.ndarray]]:
        async with AsyncTensorClient(served.grpc_target, SERVICE, connections=connections) as client:
            before = _established_to(port)
            tensors = await asyncio.gather(*(client.fetch(entities) for _ in range(6)))
            return _established_to(port) - before, [t.values for t in tensors]

    opened, values = asyncio.run(fetch_all(3))
    assert opened == 3
    assert all(np.array_equal(v, values[0]) for v in values)
    assert asyncio.run(fetch_all(1))[0] == 1


def _produce(settings: Settings, topic: str, events: list[bytes]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    for i, event in enumerate(events):
        producer.send(topic, event, partition=i % 2)
    producer.flush()
    producer.close()


def _read_all(settings: Settings, topic: str, expected: int) -> list[Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, auto_offset_reset="earliest")
    consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []])
    records: list[Any] = []
    deadline = time.monotonic() + 20
    while len(records) < expected and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=200).values():
            records += batch
    consumer.close()
    return records


def _committed(settings: Settings, group: str, topic: str) -> dict[int, int | None]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
    )
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    committed = {tp.partition: consumer.committed(tp) for tp in tps}
    consumer.close()
    return committed


def _worker_config(
    settings: Settings, served: ServeProcess, trained: TrainResult, max_requests: int
) -> WorkerConfig:
    """Fresh topics (2 partitions) and group; batches of up to 8, 3 fetches in flight."""
    from featureline.cli.devstack import ensure_topic

    run_id = random.getrandbits(24)
    config = WorkerConfig(
        model=trained.path,
        in_topic=f"scoring-{run_id}",
        out_topic=f"scores-{run_id}",
        serving=served.grpc_target,
        group_id=f"workers-test-{run_id}",
        pipeline=PipelineConfig(max_batch=8, max_wait_s=0.005, max_inflight=3),
        max_requests=max_requests,
        idle_exit_s=30.0,
    )
    for topic in (config.in_topic, config.out_topic, config.dlq_topic):
        ensure_topic(settings, topic, 2)
    return config


def _scores(settings: Settings, topic: str, expected: int, fingerprint: str) -> dict[str, np.float32]:
    """txn_id -> score of the score records on `topic`, each record checked."""
    scores = {}
    for record in _read_all(settings, topic, expected):
        body = json.loads(record.value)
        assert record.key == body["txn_id"].encode()
        assert body["model"] == fingerprint
        assert body["latency_ms"] > 0
        scores[body["txn_id"]] = np.float32(body["score"])
    return scores


def test_the_worker_scores_a_kafka_stream_as_scoring_one_by_one_would(
    served: ServeProcess,
    workers_settings: Settings,
    layout: FeatureLayout,
    online: EntityDomain,
    trained: TrainResult,
) -> None:
    config = _worker_config(workers_settings, served, trained, max_requests=42)
    rows = request_rows(layout, online, 40, seed=5)
    events = [
        json.dumps({"txn_id": f"t{i}", "user_id": u, "merchant_id": m, "amount": 12.5}).encode()
        for i, (u, m) in enumerate(rows)
    ]
    events.insert(7, b'{"txn_id": "bad-json"')
    events.insert(20, json.dumps({"txn_id": "no-user", "merchant_id": "merchant_id-1"}).encode())
    _produce(workers_settings, config.in_topic, events)

    stats = run_worker(workers_settings, config)

    assert (stats.scored, stats.rejected) == (40, 2)
    scores = _scores(workers_settings, config.out_topic, 40, trained.meta.fingerprint)
    assert sorted(scores) == sorted(f"t{i}" for i in range(40))
    dead = _read_all(workers_settings, config.dlq_topic, 2)
    reasons = sorted(dict(r.headers)["error"].decode() for r in dead)
    assert reasons[0].startswith("field 'user_id' is missing") and reasons[1].startswith("not JSON")
    # Every request scored or dead-lettered is committed: the next offset of each
    # partition is the number of messages produced to it (counted here: Tansu 0.6
    # answered end_offsets() with 1 for partitions holding 21 messages).
    produced = {p: len(events[p::2]) for p in (0, 1)}
    assert _committed(workers_settings, config.group_id, config.in_topic) == produced

    # The same inputs, fetched and scored one request at a time.
    model, _ = load_model(trained.path)
    scorer = Scorer(model, "cpu")
    with TensorClient(served.grpc_target, SERVICE, timeout_s=5.0) as client:
        for i, (user, merchant) in enumerate(rows):
            tensor = client.fetch({"user_id": [user], "merchant_id": [merchant]})
            one = scorer.score(tensor.values, tensor.mask)[0]
            assert one == scores[f"t{i}"], (i, one, scores[f"t{i}"])
    assert len({float(s) for s in scores.values()}) > 10  # the scores do depend on the features
