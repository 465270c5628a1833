"""Helpers of the streaming tests: a producer, waiting for the job, the naive oracle
(semantics.md, event by event) and the online read of tiles and latest values."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds

from featureline.offline import raw_dir
from featureline.online.feast_format import decode_timestamp, decode_value, feature_field
from featureline.online.tiles import decode_tile, offsets_key, parse_tile_field, tile_key_for
from featureline.semantics import US, aggregate, in_window, latest_order_key
from featureline.settings import Settings
from featureline.specs import RepoSpec, ViewSpec
from streaming.tiles import key_encoder

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
        return {**os.environ, **self.settings.env_vars(), "PYTHONUNBUFFERED": "1"}

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


def dlq_messages(case: StreamCase) -> list[Any]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(f"{case.topic}.dlq", bootstrap_servers=case.settings.kafka_bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)  # fmt: skip
    out = list(consumer)
    consumer.close()
    return out


# --- the naive oracle and the online read ---------------------------------------------


def oracle_aggregates(view: ViewSpec, events: list[dict[str, Any]], key: Any, t_us: int) -> dict[str, Any]:
    """semantics.md 2, event by event: every aggregation of `view` for one entity."""
    out = {}
    kname = view.join_key_names[0]
    for agg in view.aggregations:
        values = [
            e[agg.column]
            for e in events
            if e[kname] == key and in_window(e["_ts_us"], t_us, agg.window_s, agg.tile_s)
        ]
        out[agg.name] = aggregate(values, agg.function)
    return out


def online_aggregates(client: Any, project: str, view: ViewSpec, key: Any, t_us: int) -> dict[str, Any]:
    from featureline.online.tiles import window_value

    ekey = key_encoder(project, view)((key,))
    tiles: dict[int, list[tuple[int, Any]]] = {}
    for tile_s in view.tile_sizes_s():
        raw = client.hgetall(tile_key_for(project, view.name, tile_s, ekey))
        tiles[tile_s] = [(parse_tile_field(f)[0], decode_tile(v)) for f, v in raw.items()]
    return {a.name: window_value(a, tiles[a.tile_s], t_us) for a in view.aggregations}


def oracle_latest(events: list[dict[str, Any]], key: Any) -> dict[str, Any] | None:
    mine = [e for e in events if e["user_id"] == key]
    if not mine:
        return None
    return max(mine, key=lambda e: latest_order_key(e["_ts_us"], e["_created_us"]))


def online_latest(client: Any, project: str, view: ViewSpec, key: Any) -> dict[str, Any] | None:
    ekey = key_encoder(project, view)((key,))
    fields = [feature_field(view.name, f) for f in view.feature_names]
    raw = client.hmget(ekey, [*fields, f"_ts:{view.name}".encode()])
    if raw[-1] is None:
        return None
    out = {n: decode_value(v) for n, v in zip(view.feature_names, raw, strict=False)}
    out["_ts_us"] = decode_timestamp(raw[-1])
    return out


def assert_online_equals_oracle(client: Any, case: StreamCase, events: list[dict[str, Any]]) -> int:
    t_us = now_us()
    checked = 0
    for view_name, key_name in (("user_txn_stats", "user_id"), ("merchant_txn_stats", "merchant_id")):
        view = case.repo.view(view_name)
        for key in sorted({e[key_name] for e in events}):
            want = oracle_aggregates(view, events, key, t_us)
            got = online_aggregates(client, case.project, view, key, t_us)
            assert got == want, f"{view_name} {key_name}={key} at t={t_us}"
            checked += len(want)
    latest = case.repo.view("user_last_txn")
    for user in sorted({e["user_id"] for e in events}):
        want_row = oracle_latest(events, user)
        got_row = online_latest(client, case.project, latest, user)
        assert want_row is not None and got_row is not None
        assert got_row["_ts_us"] == want_row["_ts_us"]
        assert {f: got_row[f] for f in latest.feature_names} == {
            f: want_row[f] for f in latest.feature_names
        }, f"user_last_txn user_id={user}"
        checked += 1
    return checked


def now_us() -> int:
    return int(time.time() * US)


OracleCheck = Callable[[], None]
