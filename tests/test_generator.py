"""The event generator: determinism, realism, Kafka and Parquet output."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featureline.cli import main
from featureline.cli.generator import (
    RAW_SCHEMA,
    GeneratorConfig,
    KafkaBatch,
    generate_events,
    kafka_batch,
    kafka_records,
    make_config,
    parse_rate,
    write_raw_events,
)
from featureline.cli.generator.fastfmt import iso_utc
from featureline.errors import BadInputError
from featureline.settings import Settings

START = datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00$")
FIELDS = {
    "txn_id": str,
    "user_id": int,
    "merchant_id": str,
    "amount": float,
    "currency": str,
    "country": str,
    "event_timestamp": str,
}


def strict_event(value: bytes) -> dict[str, object] | None:
    """What a careful consumer accepts; None for a message it must reject."""
    try:
        event = json.loads(value)
    except ValueError:
        return None
    if set(event) != set(FIELDS):
        return None
    if any(type(event[k]) is not t for k, t in FIELDS.items()):
        return None
    if not ISO_RE.match(str(event["event_timestamp"])):
        return None
    ts = datetime.fromisoformat(str(event["event_timestamp"]))
    return event if ts < START + timedelta(days=30) else None


@pytest.fixture(scope="module")
def day() -> tuple[GeneratorConfig, pa.Table, KafkaBatch]:
    # 5,000 users: ~10 transactions per user and day, a card holder's order of magnitude.
    config = GeneratorConfig(seed=11, events=50_000, start=START, duration_s=86_400, users=5_000)
    events = generate_events(config)
    return config, events, kafka_batch(config, events)


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    config = GeneratorConfig(seed=5, events=5_000, start=START, duration_s=6 * 3600)
    first = list(kafka_records(config))
    assert first == list(kafka_records(config))
    assert generate_events(config).equals(generate_events(config))
    other = list(kafka_records(GeneratorConfig(seed=6, events=5_000, start=START, duration_s=6 * 3600)))
    assert len(other) == len(first)
    assert sum(a == b for a, b in zip(first, other, strict=True)) == 0


def test_size_resolution() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)
    config = make_config(events=1000, now=now)
    assert config.duration_s == 86_400 and config.end == now
    assert make_config(hours=2, rate_per_s=parse_rate("3600/h"), now=now).events == 7200
    assert make_config(events=100, rate_per_s=10, now=now).duration_s == 10
    assert make_config(events=10, realtime=True, now=now).start == now
    assert parse_rate("100000/d") == pytest.approx(100000 / 86400)
    with pytest.raises(BadInputError):
        make_config(events=1, hours=1, rate_per_s=1)
    with pytest.raises(BadInputError):
        parse_rate("fast")


def test_event_format(day: tuple[GeneratorConfig, pa.Table, KafkaBatch]) -> None:
    config, events, batch = day
    assert events.num_rows == config.events
    assert len(set(events["txn_id"].to_pylist())) == events.num_rows
    valid = [v for v, bad in zip(batch.values, batch.malformed, strict=True) if not bad]
    parsed = [strict_event(v) for v in valid]
    assert all(p is not None for p in parsed)
    first = json.loads(valid[0])
    row = events.slice(0, 1).to_pylist()[0]
    assert first["txn_id"] == row["txn_id"] and first["amount"] == row["amount"]
    assert datetime.fromisoformat(first["event_timestamp"]) == row["event_timestamp"]
    assert re.match(r"^m_\d{5}$", first["merchant_id"])
    amounts = events["amount"].to_numpy()
    assert np.allclose(amounts, np.round(amounts, 2)) and amounts.min() >= 0.5
    created = events["created"].cast(pa.int64()).to_numpy()
    assert (created >= events["event_timestamp"].cast(pa.int64()).to_numpy()).all()
    assert (np.diff(created) >= 0).all()  # rows are in emission order
    # Keys are the user id, so the default partitioner keeps a user's events together.
    assert batch.keys[0] == str(first["user_id"]).encode()


def test_zipf_skew_and_daily_seasonality(day: tuple[GeneratorConfig, pa.Table, KafkaBatch]) -> None:
    _, events, _ = day
    counts = np.sort(np.bincount(events["user_id"].to_numpy()))[::-1]
    ranks = np.arange(1, 51)
    slope = np.polyfit(np.log(ranks), np.log(counts[:50]), 1)[0]
    assert -1.2 < slope < -0.5  # Zipf s = 0.8 (bursts add noise)
    assert counts[:50].sum() / counts.sum() > 0.2  # top 1% of users: 28% of events
    merchants = Counter(events["merchant_id"].to_pylist()).most_common()
    assert merchants[0][1] > 10 * merchants[len(merchants) // 2][1]
    hours = (events["event_timestamp"].cast(pa.int64()).to_numpy() // 3_600_000_000) % 24
    by_hour = np.bincount(hours, minlength=24)
    assert by_hour[12:16].sum() > 3 * by_hour[0:4].sum()


def test_late_and_malformed_shares(day: tuple[GeneratorConfig, pa.Table, KafkaBatch]) -> None:
    config, events, batch = day
    ts = events["event_timestamp"].cast(pa.int64()).to_numpy()
    late = ts[1:] < np.maximum.accumulate(ts)[:-1]
    assert 0.007 < late.mean() < 0.013
    lateness_s = (np.maximum.accumulate(ts)[:-1] - ts[1:])[late] / 1e6
    assert lateness_s.max() <= 600
    assert batch.n_malformed == round(config.events * 0.001) == len(batch) - events.num_rows
    rejected = [strict_event(v) is None for v in batch.values]
    assert rejected == batch.malformed.tolist()


def test_fraud_labels_follow_catchable_patterns(
    day: tuple[GeneratorConfig, pa.Table, KafkaBatch],
) -> None:
    from featureline.cli.generator import population

    config, events, _ = day
    fraud = events["is_fraud"].to_numpy().astype(bool)
    assert 0.008 < fraud.mean() < 0.025
    pop = population(config)
    user = events["user_id"].to_numpy() - 1
    from featureline.cli.generator.model import COUNTRIES

    home = np.array(COUNTRIES)[pop.home[user]]
    foreign = np.array(events["country"].to_pylist()) != home
    assert foreign[fraud].mean() > 5 * foreign[~fraud].mean()
    ratio = events["amount"].to_numpy() / pop.typical[user]
    assert np.median(ratio[fraud]) > 3 * np.median(ratio[~fraud])
    # Bursts: fraud events often have another event of the same user within 2 minutes.
    ts = events["event_timestamp"].cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, user))
    same_user = user[order][1:] == user[order][:-1]
    close = same_user & (np.diff(ts[order]) < 120_000_000)
    near = np.zeros(len(ts), bool)
    near[order[1:][close]] = True
    assert near[fraud].mean() > 2 * near[~fraud].mean()  # measured: 0.55 vs 0.18


def test_iso_formatting_matches_numpy() -> None:
    values = np.random.default_rng(0).integers(0, 4_000_000_000_000_000, 10_000)
    expected = np.char.add(np.datetime_as_string(values.astype("datetime64[us]"), unit="us"), "+00:00")
    assert iso_utc(values).to_pylist() == expected.tolist()


def test_raw_parquet_layout(tmp_path: Path) -> None:
    config = GeneratorConfig(seed=3, events=3_000, start=START + timedelta(hours=12), duration_s=86_400)
    events = generate_events(config)
    root = tmp_path / "raw" / "transactions"
    files = write_raw_events(events, root, "part-00000")
    assert sorted(p.parent.name for p in files) == ["date=2026-11-21", "date=2026-11-22"]
    total = 0
    for path in files:
        table = pq.read_table(path)
        assert table.schema.equals(RAW_SCHEMA)
        dates = {d.date().isoformat() for d in table["event_timestamp"].to_pylist()}
        assert dates == {path.parent.name.removeprefix("date=")}
        assert set(table["kafka_partition"].to_pylist()) == {-1}
        assert set(table["kafka_offset"].to_pylist()) == {-1}
        total += table.num_rows
    assert total == events.num_rows
    assert write_raw_events(events, root, "part-00000") == files  # rerun replaces
    assert len(list(root.rglob("*.parquet"))) == 2


def test_cli_writes_parquet_and_batch_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FEATURELINE_OFFLINE_DIR", str(tmp_path / "offline"))
    argv = ["generate", "--to", "parquet", "--events", "2000", "--hours", "6", "--users", "300"]
    assert main([*argv, "--start", "2026-11-21T06:00:00Z", "--quiet"]) == 0
    assert "2,000 raw events" in capsys.readouterr().out
    offline = tmp_path / "offline"
    raw = list((offline / "raw" / "transactions").glob("date=*/part-*.parquet"))
    assert [p.parent.name for p in raw] == ["date=2026-11-21"]
    profile = pq.read_table(offline / "user_profile" / "user_profile.parquet")
    ts_type = pa.timestamp("us", tz="UTC")
    assert profile.schema.equals(
        pa.schema(
            [
                ("user_id", pa.int64()),
                ("account_age_days", pa.int64()),
                ("home_country", pa.string()),
                ("credit_limit", pa.float64()),
                ("event_timestamp", ts_type),
                ("created", ts_type),
            ]
        )
    )
    assert profile.num_rows == 300
    labels = pq.read_table(offline / "labels" / "fraud_labels.parquet")
    assert labels.column_names == [
        "txn_id", "user_id", "merchant_id", "amount", "country", "event_timestamp", "is_fraud",
    ]  # fmt: skip
    assert labels.num_rows == 2000 and labels.schema.field("is_fraud").type == pa.int64()


def test_kafka_round_trip(
    stack: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kafka import KafkaConsumer, TopicPartition

    for key, value in stack.env_vars().items():
        monkeypatch.setenv(key, value)
    args = ["--events", "3000", "--hours", "2", "--seed", "9", "--start", "2026-11-21T10:00:00Z"]
    assert main(["generate", "--topic", "gen_rt", "--partitions", "3", "--quiet", *args]) == 0
    out = capsys.readouterr().out
    assert "3,003 messages (3 malformed)" in out
    config = make_config(events=3000, hours=2, seed=9, start=START + timedelta(hours=10))
    expected = list(kafka_records(config))

    consumer = KafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000
    )
    partitions = [TopicPartition("gen_rt", p) for p in range(3)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received = []
    for message in consumer:
        received.append(message)
        if len(received) == len(expected):
            break
    consumer.close()
    assert Counter((m.key, m.value) for m in received) == Counter(expected)
    assert len({m.partition for m in received}) == 3
    assert len({(m.key, m.partition) for m in received}) == len({m.key for m in received})
    # Within a partition the broker keeps emission order.
    position = {kv: i for i, kv in enumerate(expected)}
    for p in range(3):
        seq = [position[(m.key, m.value)] for m in received if m.partition == p]
        assert seq == sorted(seq)
