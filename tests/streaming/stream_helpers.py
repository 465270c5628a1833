"""Helpers of the streaming tests: a producer, waiting for the job, and the check of
what `featureline serve` answers (REST and gRPC) against the naive oracle."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.dataset as ds
from oracle.naive import US, Event, latest_row, same, to_us, window_value
from serve_process import ServerProcess, child_env

from featureline.offline import raw_dir
from featureline.online.tiles import offsets_key
from featureline.serving_api.client import FeatureClient
from featureline.settings import Settings
from featureline.specs import RepoSpec, ViewSpec

DEMO_REPO = Path(__file__).resolve().parents[2] / "feature_repo"


@dataclass
class StreamCase:
    """One test's repo: settings, specs, topic and project."""

    settings: Settings
    repo: RepoSpec
    topic: str

    @property
    def project(self) -> str:
        return self.repo.project

    def env(self) -> dict[str, str]:
        return child_env(self.settings, PYTHONUNBUFFERED="1")

    def start_job(self, *args: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "featureline.cli", "stream", "--repo",
               str(self.settings.repo), "--progress", "off", *args]  # fmt: skip
        return subprocess.Popen(cmd, env=self.env(), stderr=subprocess.PIPE)


def produce(settings: Settings, topic: str, messages: list[tuple[int, bytes, int]]) -> dict[int, int]:
    """Send (partition, value, timestamp_ms) in order; returns partition -> last offset."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5)
    futures = [producer.send(topic, value=v, partition=p, timestamp_ms=ts) for p, v, ts in messages]
    producer.flush()
    last: dict[int, int] = {}
    for f in futures:
        meta = f.get(timeout=10)
        last[meta.partition] = max(last.get(meta.partition, -1), meta.offset)
    producer.close()
    return last


def wait_applied(
    client: Any,
    case: StreamCase,
    last: dict[int, int],
    job: subprocess.Popen[bytes] | None = None,
    timeout_s: float = 60,
) -> None:
    """Until every partition's applied-offset watermark reached `last`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if job is not None and job.poll() is not None:
            _, err = job.communicate()
            raise AssertionError(f"the job exited ({job.returncode}):\n{err.decode()[-4000:]}")
        marks = {p: client.get(offsets_key(case.project, case.topic, p)) for p in last}
        if all(m is not None and int(m) >= o for (p, o), m in zip(last.items(), marks.values(), strict=True)):
            return
        time.sleep(0.2)
    raise AssertionError(f"not applied within {timeout_s} s: want {last}, have {marks}")


def stop_job(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=timeout_s)
    assert proc.returncode == 0, err.decode()[-3000:]
    return err.decode()


def run_until_applied(
    client: Any, case: StreamCase, events: list[dict[str, Any]], stats: Path, *flags: str
) -> dict[str, Any]:
    """Send `events`, run the job (with `flags`) until every offset is applied, stop it
    (SIGTERM: drain, flush, commit, stats) and return its --stats-file summary. Stopped
    that way, not by --idle-exit-s, whose limit counts from start-up: a slow start on a
    busy machine would end the job early."""
    last = send(case, events)
    job = case.start_job("--stats-file", str(stats), *flags)
    try:
        wait_applied(client, case, last, job, timeout_s=180)
    finally:
        stop_job(job)
    summary: dict[str, Any] = orjson.loads(stats.read_bytes())
    return summary


# --- events in, results out ---------------------------------------------------------

HOUR_US = 3600 * US


def make_events(rng: random.Random, n: int, users: int, t0_us: int, old: int = 0) -> list[dict[str, Any]]:
    """Out-of-order events over the last 23 h (all within the 24 h window's tiles, most
    too old for the 1 h window's), `old` of them 3 days old (too old for any tile),
    some null amounts, and events sharing (user, event time) so that the created-time
    tie-break matters."""
    events: list[dict[str, Any]] = []
    for i in range(n):
        ts = t0_us - rng.randrange(0, 23 * HOUR_US)
        if i < old:
            ts = t0_us - 72 * HOUR_US - rng.randrange(HOUR_US)
        if events and rng.random() < 0.05:  # same user, same event time, later created
            ts = events[-1]["_ts_us"]
            user = events[-1]["user_id"]
        else:
            user = rng.randrange(users)
        amount = None if rng.random() < 0.03 else round(rng.uniform(0.5, 500.0), 2)
        events.append({
            "txn_id": f"t{rng.getrandbits(40):x}", "user_id": user,
            "merchant_id": f"m{rng.randrange(7)}", "amount": amount, "currency": "EUR",
            "country": rng.choice(["DE", "FR", "NL"]),
            "event_timestamp": datetime.fromtimestamp(ts / US, UTC).isoformat(),
            "_ts_us": ts, "_partition": rng.randrange(3),
        })  # fmt: skip
    return events


def send(
    case: StreamCase, events: list[dict[str, Any]], extra: list[tuple[int, bytes]] = ()
) -> dict[int, int]:
    base_ms = int(time.time() * 1000)
    msgs = []
    for i, e in enumerate(events):
        e["_created_us"] = (base_ms + i) * 1000
        payload = {k: v for k, v in e.items() if not k.startswith("_")}
        msgs.append((e["_partition"], orjson.dumps(payload), base_ms + i))
    msgs += [(p, raw, base_ms) for p, raw in extra]
    return produce(case.settings, case.topic, msgs)


def offline_rows(case: StreamCase) -> Any:
    base = raw_dir(case.settings.resolved_offline_dir, case.topic)
    return ds.dataset(base, format="parquet", partitioning="hive").to_table()


def dlq_messages(case: StreamCase, timeout_s: float = 30) -> list[Any]:
    """Every message of the test topic's DLQ, read up to the end offsets it has now (the
    job has stopped): no idle wait after the last one (a 3 s consumer timeout, before)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = f"{case.topic}.dlq"
    consumer = KafkaConsumer(bootstrap_servers=case.settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        out: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            assert time.monotonic() < deadline, f"{topic}: not read to {ends} in {timeout_s} s"
            for records in consumer.poll(timeout_ms=200).values():
                out += records
        return out
    finally:
        consumer.close()


# --- the naive oracle, and the values read back through `featureline serve` ----------


def oracle_events(events: list[dict[str, Any]], key_name: str) -> list[Event]:
    return [Event((e[key_name],), e["_ts_us"], e["_created_us"], e) for e in events]


def oracle_aggregates(view: ViewSpec, events: list[Event], key: Any, t_us: int) -> dict[str, Any]:
    """semantics.md 2, by the naive oracle: every aggregation of `view` for one entity."""
    return {
        a.name: window_value(events, (key,), t_us, a.column, a.function, a.window_s, a.slide_s)
        for a in view.aggregations
    }


def oracle_latest(events: list[dict[str, Any]], key: Any) -> dict[str, Any] | None:
    """The winning event of `key` (ttl 0: the stream's events are all younger than the
    views' ttl; `served_latest` checks the ttl against the serving time)."""
    row = latest_row(oracle_events(events, "user_id"), (key,), 2**62, 0)
    return None if row is None else row.values


@dataclass
class Served:
    """One feature column as served: values, statuses, event times (us) per entity."""

    values: list[Any]
    statuses: list[str]
    stamps_us: list[int]


def served(server: ServerProcess, refs: list[str], entities: dict[str, list[Any]], via: str
           ) -> dict[str, Served]:  # fmt: skip
    """GetOnlineFeatures through the running server, by REST or gRPC; by feature name."""
    if via == "grpc":
        with FeatureClient(server.target) as client:
            got = client.get_online_features(entities, features=refs)
        return {
            n: Served(got.values[n], got.statuses[n], got.event_timestamps_us[n]) for n in got.feature_names
        }
    response = httpx.post(f"{server.url}/get-online-features",
                          json={"features": refs, "entities": entities}, timeout=30)  # fmt: skip
    assert response.status_code == 200, response.text
    body = response.json()
    out = {}
    for name, col in zip(body["metadata"]["feature_names"], body["results"], strict=True):
        stamps = [0 if t is None else to_us(datetime.fromisoformat(t.replace("Z", "+00:00")))
                  for t in col["event_timestamps"]]  # fmt: skip
        out[name] = Served(col["values"], col["statuses"], stamps)
    return out


def _check_aggregates(server: ServerProcess, view: ViewSpec, events: list[dict[str, Any]],
                      key_name: str, via: str) -> int:  # fmt: skip
    keys = sorted({e[key_name] for e in events})
    mine = oracle_events(events, key_name)
    refs = [f"{view.name}:{a.name}" for a in view.aggregations]
    before = now_us()
    got = served(server, refs, {key_name: keys}, via)
    after = now_us()
    for i, key in enumerate(keys):
        row = {a.name: got[a.name].values[i] for a in view.aggregations}
        # The server's t lies between before and after; a tile edge may fall between.
        wants = [oracle_aggregates(view, mine, key, t) for t in (before, after)]
        assert any(all(same(row[n], w[n]) for n in w) for w in wants), (via, view.name, key, row, wants)
        assert all(got[n].statuses[i] == "PRESENT" for n in row if row[n] is not None), (via, key)
    return len(keys) * len(refs)


def served_latest(server: ServerProcess, view: ViewSpec, events: list[dict[str, Any]],
                  via: str) -> int:  # fmt: skip
    """The view's latest values served for every user equal the oracle's winning row."""
    users = sorted({e["user_id"] for e in events})
    refs = [f"{view.name}:{f}" for f in view.feature_names]
    t_us = now_us()
    got = served(server, refs, {"user_id": users}, via)
    rows = oracle_events(events, "user_id")
    for i, user in enumerate(users):
        win = latest_row(rows, (user,), t_us, view.ttl_s)
        assert win is not None, user  # the generated events are all within the ttl
        for f in view.feature_names:
            col = got[f]
            want = win.values.get(f)
            assert same(col.values[i], want), (via, view.name, user, f, col.values[i], want)
            assert col.statuses[i] == ("NULL_VALUE" if want is None else "PRESENT"), (via, user, f)
            assert col.stamps_us[i] == win.event_us, (via, user, f)
    return len(users)


def assert_online_equals_oracle(server: ServerProcess, case: StreamCase, events: list[dict[str, Any]]) -> int:
    """Every aggregation and latest value, read by REST and by gRPC, equals the oracle."""
    checked = 0
    for via in ("rest", "grpc"):
        for view_name, key_name in (("user_txn_stats", "user_id"), ("merchant_txn_stats", "merchant_id")):
            checked += _check_aggregates(server, case.repo.view(view_name), events, key_name, via)
        checked += served_latest(server, case.repo.view("user_last_txn"), events, via)
    return checked


def now_us() -> int:
    return int(time.time() * US)


OracleCheck = Callable[[], None]
