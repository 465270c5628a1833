"""Fixtures of the worker tests: the session's real Redis and broker (tests/conftest.py
`stack`), our own home and offline dir, the demo repo's specs, a trained model, and
`featureline serve` as a subprocess over synthetic online features."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from benchmarks.worker.env import ServeProcess, serving
from benchmarks.worker.synthetic import EntityDomain
from featureline.serving_api.workers.layout import FeatureLayout
from featureline.serving_api.workers.train import TrainResult
from featureline.settings import Settings
from featureline.specs import RepoSpec

SERVICE = "fraud_training_v1"


@pytest.fixture(scope="session")
def workers_settings(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The stack's Redis and Kafka, with our own home (spec cache, models), offline
    dir (training data nobody else reads) and serving ports."""
    from featureline.cli.devstack import free_ports

    home = tmp_path_factory.mktemp("workers-home")
    http_port, grpc_port = free_ports(2)
    return dataclasses.replace(
        stack, home=home, offline_dir=str(home / "offline"), http_port=http_port, grpc_port=grpc_port
    )


@pytest.fixture(scope="session")
def workers_repo(workers_settings: Settings) -> RepoSpec:
    from featureline.repo import load_repo

    return load_repo(workers_settings)


@pytest.fixture(scope="session")
def layout(workers_repo: RepoSpec) -> FeatureLayout:
    from featureline.serving_api.workers.layout import feature_layout

    return feature_layout(workers_repo, SERVICE)


def _merchant_risk(labels: pa.Table) -> pa.Table:
    """A daily snapshot per merchant (the Spark backfill computes the real one; the
    worker tests only need the view to have rows)."""
    import pyarrow.compute as pc

    merchants = sorted(set(labels["merchant_id"].to_pylist()))
    first = pc.min(labels["event_timestamp"]).as_py().replace(hour=0, minute=0, second=0, microsecond=0)
    days = [first + timedelta(days=d) for d in range(3)]
    rows = [(m, (i % 7) / 100, 10 + i % 50, day) for day in days for i, m in enumerate(merchants)]
    ts = pa.array([r[3] for r in rows], pa.timestamp("us", "UTC"))
    return pa.table({
        "merchant_id": [r[0] for r in rows],
        "chargeback_rate_30d": [r[1] for r in rows],
        "txn_count_30d": pa.array([r[2] for r in rows], pa.int64()),
        "event_timestamp": ts,
        "created": ts,
    })  # fmt: skip


@pytest.fixture(scope="session")
def training_data(workers_settings: Settings) -> Path:
    """Generator output in our offline dir: raw events, user_profile, labels; plus
    merchant_risk. Returns the labels file."""
    import pyarrow.parquet as pq

    from featureline.cli.generator import make_config, write_batch_sources, write_raw_events
    from featureline.cli.generator.parquet import RAW_SUBDIR, raw_part_name
    from featureline.cli.generator.table import generate_events
    from featureline.offline import write_partitioned

    offline = workers_settings.resolved_offline_dir
    config = make_config(seed=11, events=20_000, hours=24.0)
    events = generate_events(config)
    write_raw_events(events, offline / RAW_SUBDIR, raw_part_name(config))
    labels = write_batch_sources(config, events, offline)["labels"]
    write_partitioned(
        _merchant_risk(pq.read_table(labels)), offline / "merchant_risk", ts_column="event_timestamp"
    )
    return labels


@pytest.fixture(scope="session")
def trained(workers_settings: Settings, workers_repo: RepoSpec, training_data: Path) -> TrainResult:
    from featureline.cli.training import train
    from featureline.serving_api.workers.train import TrainConfig

    out = workers_settings.home / "models" / "fraud.pt"
    return train(workers_settings, training_data, out, TrainConfig(service=SERVICE, epochs=8))


@pytest.fixture(scope="module")
def online(workers_settings: Settings, workers_repo: RepoSpec, layout: FeatureLayout) -> EntityDomain:
    """Synthetic online features of 300 users and 40 merchants, events of the last 4
    minutes only (values stay equal for several minutes: fetches can be compared)."""
    import redis

    from benchmarks.worker.synthetic import entity_domain, load_online_features

    client = redis.Redis.from_url(workers_settings.redis_url)
    client.flushdb()
    domain = entity_domain(layout, {"user_id": 300, "merchant_id": 40})
    load_online_features(client, workers_repo, layout, domain, int(time.time() * 1e6), max_age_s=240)
    client.close()
    return domain


@pytest.fixture(scope="module")
def served(workers_settings: Settings, online: EntityDomain) -> Iterator[ServeProcess]:
    with serving(workers_settings, SERVICE) as serve:
        yield serve
