"""Helpers of the streaming tests: a producer, waiting for the job, the naive oracle
(semantics.md, event by event) and the online read of tiles and latest values."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def now_us() -> int:
    return int(time.time() * US)


OracleCheck = Callable[[], None]
