"""The embedded dev stack through its CLI and its Python API, against real servers."""

from __future__ import annotations

import json
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from featureline.cli import main
from featureline.cli.devstack import ensure_topic, free_port, load_state, stack_status
from featureline.settings import Settings


@pytest.fixture
def cli_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    isolated_settings: Callable[..., Settings],
) -> Iterator[Settings]:
    """FEATURELINE_* pointing at a private home and free ports; `dev down` afterwards."""
    settings = isolated_settings(tmp_path / "home")
    for key, value in settings.env_vars().items():
        monkeypatch.setenv(key, value)
    yield settings
    main(["dev", "down"])


def test_up_status_down_through_the_cli(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "status"]) == 1  # nothing started yet
    assert main(["dev", "up"]) == 0
    out = capsys.readouterr().out
    assert "redis     started" in out and "kafka     started" in out
    state = json.loads((cli_env.home / "devstack.json").read_text())
    assert set(state["services"]) == {"redis", "kafka"}
    assert state["services"]["redis"]["port"] == cli_env.redis_port
    assert state["services"]["kafka"]["argv"][1] == "broker"
    assert (cli_env.home / "logs" / "redis.log").exists()

    assert main(["dev", "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert all(s["up"] for s in status["services"])

    assert main(["dev", "down"]) == 0
    assert "stopped" in capsys.readouterr().out
    assert not (cli_env.home / "devstack.json").exists()
    assert main(["dev", "down"]) == 0  # idempotent
    assert "not running" in capsys.readouterr().out
    assert main(["dev", "status"]) == 1
    assert not any(s.running for s in stack_status(cli_env))


def test_up_is_idempotent(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dev", "up"]) == 0
    first = load_state(cli_env)
    assert main(["dev", "up"]) == 0
    assert capsys.readouterr().out.count("already running") == 2
    second = load_state(cli_env)
    assert first is not None and second is not None
    assert {n: s.pid for n, s in first.services.items()} == {n: s.pid for n, s in second.services.items()}


@pytest.mark.parametrize("service", ["redis", "kafka"])
def test_taken_port_is_a_clear_error(
    service: str,
    cli_env: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        monkeypatch.setenv(f"FEATURELINE_{service.upper()}_PORT", str(port))
        assert main(["dev", "up"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        f"error: port {port} ({service}) is already in use by another process; "
        f"set FEATURELINE_{service.upper()}_PORT or stop it"
    )
    assert "Traceback" not in err
    # Nothing half-started is left behind.
    assert load_state(cli_env) is None


def test_redis_round_trip(redis_client: redis.Redis) -> None:
    redis_client.hset("user:1", mapping={"amount": "12.50", "country": "DE"})
    assert redis_client.hgetall("user:1") == {b"amount": b"12.50", b"country": b"DE"}
    assert redis_client.dbsize() == 1


def test_redis_client_starts_empty(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0


def test_kafka_round_trip(stack: Settings) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    assert ensure_topic(stack, "roundtrip", partitions=3) == 3
    assert ensure_topic(stack, "roundtrip", partitions=3) == 3  # idempotent
    producer = KafkaProducer(bootstrap_servers=stack.kafka_bootstrap, linger_ms=5)
    for i in range(100):
        producer.send("roundtrip", key=str(i % 10).encode(), value=f"msg-{i}".encode())
    producer.flush()
    producer.close()

    # Manual assign, no group: a group join on Tansu takes ~23 s (measured).
    consumer = KafkaConsumer(
        bootstrap_servers=stack.kafka_bootstrap,
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    partitions = [TopicPartition("roundtrip", p) for p in range(3)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    received = []
    for message in consumer:
        received.append(message)
        if len(received) == 100:
            break
    consumer.close()
    assert sorted(m.value for m in received) == sorted(f"msg-{i}".encode() for i in range(100))
    per_partition = Counter(m.partition for m in received)
    assert len(per_partition) == 3  # keys spread over all partitions
    # Same key, same partition.
    key_partitions = {(m.key, m.partition) for m in received}
    assert len(key_partitions) == 10


def test_status_api_reports_the_session_stack(stack: Settings) -> None:
    rows = {r.name: r for r in stack_status(stack)}
    assert rows["redis"].up and rows["kafka"].up
    assert rows["kafka"].address == f"127.0.0.1:{stack.kafka_port}"


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_redis_io_threads_follow_the_cores() -> None:
    from featureline.cli.devstack.stack import redis_io_threads

    assert [redis_io_threads(c) for c in (None, 1, 2, 3, 4, 8, 16, 64)] == [1, 1, 1, 1, 1, 2, 4, 4]
