"""A failover run and its checks: events produced at a steady rate, `featureline stream`
and `featureline serve` on a Sentinel-managed or clustered Redis, a reader recording
every response (REST and gRPC) while a primary is SIGKILLed.

What a response may carry while the store fails over: 503 / UNAVAILABLE, or values
that some prefix of the event stream produces. Every entity's events go to one
partition (the partition follows the merchant, the merchant the user), so the
events applied to an entity's key at any moment are a prefix of that entity's events
in offset order, and a served row must equal the naive oracle (tests/oracle/naive.py)
over such a prefix: all the aggregations of one view the same prefix (a sum that is
not the sum of the prefix whose count was served fails), the latest row the winner of
a prefix. A failover may show an earlier prefix than a read before it did (Redis
replicates asynchronously: a read can see a write the replica never got), never a
value no prefix gives.
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from oracle.naive import US, aggregate, same, tile_size_s, window_start_us
from stream_helpers import Served, StreamCase

from benchmarks.stream.repo import isolated_repo
from featureline.errors import ServiceUnavailableError
from featureline.serving_api.client import FeatureClient, ServingTimeoutError
from featureline.settings import Settings
from featureline.specs import ViewSpec

DEMO_REPO = Path(__file__).resolve().parents[2] / "feature_repo"
PARTITIONS = 3
MERCHANTS = 6  # merchant m{k} -> partition k % 3; user u -> merchant m{u % 6}
USERS = 24
HOUR_US = 3600 * US
_DEMO_ONLINE = "online_store:\n  type: redis\n  connection_string: ${FEATURELINE_REDIS_ADDR}\n"


# --- the repo ------------------------------------------------------------------------


def failover_case(
    stack: Settings, tmp_path: Path, online_yaml: str, monkeypatch: pytest.MonkeyPatch
) -> StreamCase:
    """A copy of the demo repo (own project and topic, 3 partitions) whose
    feature_store.yaml's online_store is `online_yaml`. Neither the settings nor the
    environment the job and server inherit name a Redis host or port: those
    (FEATURELINE_REDIS_HOST/_PORT) would replace the yaml's nodes."""
    from featureline.cli.devstack import ensure_topic
    from featureline.repo import load_repo

    for var in ("FEATURELINE_REDIS_HOST", "FEATURELINE_REDIS_PORT"):
        monkeypatch.delenv(var, raising=False)
    name = f"fo{os.urandom(4).hex()}"
    base = dataclasses.replace(stack, repo=DEMO_REPO, redis_host="127.0.0.1", redis_port=6379)
    settings = isolated_repo(base, tmp_path, name)
    yaml = settings.repo / "feature_store.yaml"
    text = yaml.read_text()
    assert _DEMO_ONLINE in text, "the demo repo's online_store changed: update failover_helpers"
    yaml.write_text(text.replace(_DEMO_ONLINE, online_yaml))
    ensure_topic(settings, name, PARTITIONS)
    return StreamCase(settings, load_repo(settings), name)


def child_env(case: StreamCase, **extra: str) -> dict[str, str]:
    return {**os.environ, **case.settings.env_vars(), "PYTHONUNBUFFERED": "1", **extra}


def start_job(case: StreamCase, log: Path, stats: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`featureline stream`, one process (static: no group join), stderr to `log`."""
    cmd = [sys.executable, "-m", "featureline.cli", "stream", "--repo", str(case.settings.repo),
           "--progress", "off", "--max-records", "200", "--flush-s", "0.3",
           "--stats-file", str(stats)]  # fmt: skip
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stderr=out, stdout=out)


# --- events --------------------------------------------------------------------------


def make_event(rng: random.Random, created_ms: int) -> dict[str, Any]:
    """One transaction: recent enough for every window (1 in 3 within 10 min, 1 in 3
    within 1 h, the rest within 23 h), 3 % null amounts."""
    user = rng.randrange(USERS)
    merchant = user % MERCHANTS
    span_s = rng.choice((540, 3300, 23 * 3600))
    ts = created_ms * 1000 - rng.randrange(span_s * US)
    amount = None if rng.random() < 0.03 else round(rng.uniform(0.5, 500.0), 2)
    return {
        "txn_id": f"t{rng.getrandbits(40):x}", "user_id": user, "merchant_id": f"m{merchant}",
        "amount": amount, "currency": "EUR", "country": rng.choice(["DE", "FR", "NL"]),
        "event_timestamp": datetime.fromtimestamp(ts / US, UTC).isoformat(),
        "_ts_us": ts, "_created_us": created_ms * 1000, "_partition": merchant % PARTITIONS,
    }  # fmt: skip


class Producer(threading.Thread):
    """Sends `per_tick` events every `tick_s` until `stop`; `events` get their offsets."""

    def __init__(self, case: StreamCase, seed: int, per_tick: int = 10, tick_s: float = 0.05) -> None:
        super().__init__(name="producer", daemon=True)
        self.case, self.per_tick, self.tick_s = case, per_tick, tick_s
        self.rng = random.Random(seed)
        self.events: list[dict[str, Any]] = []
        self.last: dict[int, int] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._producer: Any = None
        self._created = 0

    def run(self) -> None:
        try:
            while not self.stop.wait(self.tick_s):
                self.tick()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.close()

    def tick(self, count: int = 0) -> None:
        """Send `count` events (default per_tick) and wait for their offsets."""
        if self._producer is None:
            from kafka import KafkaProducer

            self._producer = KafkaProducer(bootstrap_servers=self.case.settings.kafka_bootstrap, linger_ms=5)
        sent = []
        for _ in range(count or self.per_tick):
            self._created = max(self._created + 1, int(time.time() * 1000))  # unique: LWW ties
            event = make_event(self.rng, self._created)
            payload = orjson.dumps({k: v for k, v in event.items() if not k.startswith("_")})
            future = self._producer.send(self.case.topic, value=payload, partition=event["_partition"],
                                         timestamp_ms=self._created)  # fmt: skip
            sent.append((event, future))
        self._producer.flush()
        for event, future in sent:
            meta = future.get(timeout=10)
            event["_offset"] = meta.offset
            self.last[meta.partition] = max(self.last.get(meta.partition, -1), meta.offset)
            self.events.append(event)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None


# --- responses -----------------------------------------------------------------------

USER_VIEWS = ("user_txn_stats", "user_last_txn")
MERCHANT_VIEWS = ("merchant_txn_stats",)


@dataclass
class Reply:
    """One request's outcome: "ok" (then `columns`), "unavailable", or what went wrong."""

    via: str
    key_name: str
    keys: list[Any]
    before_us: int
    after_us: int
    outcome: str
    columns: dict[str, Served] = field(default_factory=dict)


class Reader(threading.Thread):
    """Asks `featureline serve` for a few users' or every merchant's features, by REST
    and gRPC in turn, one request per `pause_s`, and records each answer."""

    def __init__(self, case: StreamCase, http_url: str, grpc_target: str, pause_s: float = 0.04) -> None:
        super().__init__(name="reader", daemon=True)
        self.repo, self.url, self.pause_s = case.repo, http_url, pause_s
        self.grpc = FeatureClient(grpc_target, retries=0, timeout_s=3.0)  # every UNAVAILABLE seen
        self.http = httpx.Client(timeout=5.0)
        self.replies: list[Reply] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.rng = random.Random(5)

    def run(self) -> None:
        turn = 0
        try:
            while not self.stop.wait(self.pause_s):
                via = ("rest", "grpc")[turn % 2]
                if turn % 3 == 2:
                    keys: list[Any] = [f"m{k}" for k in range(MERCHANTS)]
                    self.replies.append(self._ask(via, "merchant_id", keys, MERCHANT_VIEWS))
                else:
                    keys = self.rng.sample(range(USERS), 4)
                    self.replies.append(self._ask(via, "user_id", keys, USER_VIEWS))
                turn += 1
        except BaseException as exc:  # reported by the test
            self.error = exc

    def ask_all(self) -> list[Reply]:
        """Every user's and every merchant's features, by REST and by gRPC."""
        out = []
        for via in ("rest", "grpc"):
            out.append(self._ask(via, "user_id", list(range(USERS)), USER_VIEWS))
            out.append(self._ask(via, "merchant_id", [f"m{k}" for k in range(MERCHANTS)], MERCHANT_VIEWS))
        return out

    def close(self) -> None:
        self.stop.set()
        if self.is_alive():
            self.join(10)
        self.grpc.close()
        self.http.close()

    def _ask(self, via: str, key_name: str, keys: list[Any], views: Sequence[str]) -> Reply:
        refs = [f"{v}:{name}" for v in views for name in self.repo.view(v).feature_names]
        before = now_us()
        try:
            columns = self._rest(refs, key_name, keys) if via == "rest" else self._grpc(refs, key_name, keys)
            outcome = "ok" if isinstance(columns, dict) else columns
        except ServingTimeoutError as exc:
            columns, outcome = {}, f"timeout: {exc}"
        except ServiceUnavailableError:
            columns, outcome = {}, "unavailable"
        after = now_us()
        found = columns if isinstance(columns, dict) else {}
        return Reply(via, key_name, keys, before, after, outcome, found)

    def _rest(self, refs: list[str], key_name: str, keys: list[Any]) -> dict[str, Served] | str:
        response = self.http.post(f"{self.url}/get-online-features",
                                  json={"features": refs, "entities": {key_name: keys}})  # fmt: skip
        if response.status_code == 503:
            return "unavailable"
        if response.status_code != 200:
            return f"HTTP {response.status_code}: {response.text[:300]}"
        body = response.json()
        out = {}
        for name, col in zip(body["metadata"]["feature_names"], body["results"], strict=True):
            stamps = [0 if t is None else _iso_us(t) for t in col["event_timestamps"]]
            out[name] = Served(col["values"], col["statuses"], stamps)
        return out

    def _grpc(self, refs: list[str], key_name: str, keys: list[Any]) -> dict[str, Served]:
        got = self.grpc.get_online_features({key_name: keys}, features=refs)
        stamps = got.event_timestamps_us
        return {n: Served(got.values[n], got.statuses[n], stamps[n]) for n in got.feature_names}


def _iso_us(text: str) -> int:
    stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(stamp.timestamp()) * US + stamp.microsecond


def now_us() -> int:
    return int(time.time() * US)


# --- the check of every response ---------------------------------------------------


class EntityHistory:
    """One entity's events in offset order (all in one partition), and the oracle's
    values of its first j events, memoized: a run asks about the same prefixes
    hundreds of times, and the oracle's exact sums are slow."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = sorted(events, key=lambda e: e["_offset"])
        assert len({e["_partition"] for e in self.events}) <= 1, "an entity's events span partitions"
        # The winners of the latest-value view as the prefix grows: (event, created) max.
        self.winners: list[dict[str, Any]] = []
        best = (-1, -1)
        for e in self.events:
            if (e["_ts_us"], e["_created_us"]) > best:
                best = (e["_ts_us"], e["_created_us"])
                self.winners.append(e)
        self._values: dict[tuple[Any, ...], Any] = {}

    def value(self, j: int, agg: Any, t_us: int) -> Any:
        """The oracle's `agg` over the first j events at t (naive.in_window's rule, its
        window start computed once per call rather than once per event)."""
        start = window_start_us(t_us, agg.window_s, agg.slide_s)
        inside = [start <= e["_ts_us"] <= t_us for e in self.events[:j]]
        memo = (j, agg.name, start, sum(inside))  # the same events in the window: the same value
        if memo not in self._values:
            picked = [e.get(agg.column) for e, ok in zip(self.events, inside, strict=False) if ok]
            self._values[memo] = aggregate(picked, agg.function)
        return self._values[memo]

    def matching_prefix(self, aggs: Sequence[Any], row: dict[str, Any], t_us: int) -> int | None:
        """A j whose every aggregation of `aggs` at t equals `row`'s, or None. A count
        grows with j: binary search the first j of the served count of the widest
        window, then try each j of that count (without a count: every j)."""
        counts = [a for a in aggs if a.function == "count"]
        lo, last = 0, len(self.events)
        if counts:
            anchor = max(counts, key=lambda a: a.window_s)
            want = row[anchor.name]
            if not isinstance(want, int):
                return None
            hi = last
            while lo < hi:
                mid = (lo + hi) // 2
                if self.value(mid, anchor, t_us) < want:
                    lo = mid + 1
                else:
                    hi = mid
            while last >= lo and self.value(last, anchor, t_us) != want:
                last -= 1
        for j in range(lo, last + 1):
            if all(same(row[a.name], self.value(j, a, t_us)) for a in aggs):
                return j
        return None


def histories(events: list[dict[str, Any]]) -> dict[tuple[str, Any], EntityHistory]:
    out: dict[tuple[str, Any], EntityHistory] = {}
    for key_name in ("user_id", "merchant_id"):
        by_key: dict[Any, list[dict[str, Any]]] = {}
        for e in events:
            by_key.setdefault(e[key_name], []).append(e)
        out.update({(key_name, k): EntityHistory(evs) for k, evs in by_key.items()})
    return out


@dataclass
class Findings:
    """Answers that no prefix explains (`wrong`), and answers whose view read its tile
    sizes at different prefixes, each size some prefix's values (`mixed`)."""

    wrong: list[str] = field(default_factory=list)
    mixed: list[str] = field(default_factory=list)


MIXED = "mixed"


def check_replies(
    replies: list[Reply], known: dict[tuple[str, Any], EntityHistory], repo: Any, *, complete: bool = False
) -> Findings:
    """What was wrong in the recorded replies (none: every one was UNAVAILABLE or a
    prefix's values). `complete`: every reply must be a success with the values of
    ALL the events (the oracle's answer once everything is applied)."""
    found = Findings()
    for reply in replies:
        if reply.outcome == "unavailable" and not complete:
            continue
        if reply.outcome != "ok":
            found.wrong.append(f"{reply.via} {reply.keys}: {reply.outcome}")
            continue
        views = USER_VIEWS if reply.key_name == "user_id" else MERCHANT_VIEWS
        for i, key in enumerate(reply.keys):
            history = known.get((reply.key_name, key), EntityHistory([]))
            for view_name in views:
                problem = _check_row(repo.view(view_name), reply, i, history, complete)
                where = f"{reply.via} {reply.key_name}={key} {view_name}"
                if problem == MIXED:
                    found.mixed.append(where)
                elif problem:
                    found.wrong.append(f"{where}: {problem}")
    return found


def _check_row(view: ViewSpec, reply: Reply, i: int, history: EntityHistory, complete: bool) -> str | None:
    names = view.feature_names
    cols = {n: reply.columns[n] for n in names}
    statuses = {cols[n].statuses[i] for n in names}
    row = {n: cols[n].values[i] for n in names}
    if statuses == {"NOT_FOUND"}:
        # Nothing of it applied yet (or a key the promoted replica never got).
        return "not found" if complete and history.events else None
    if view.is_aggregating:
        return _check_aggregates(view, reply, i, history, complete)
    stamp = {cols[n].stamps_us[i] for n in names}
    for win in history.winners[-1:] if complete else history.winners:
        want = {n: "NULL_VALUE" if win.get(n) is None else "PRESENT" for n in names}
        got = {n: cols[n].statuses[i] for n in names}
        if stamp == {win["_ts_us"]} and all(same(row[n], win.get(n)) for n in names) and got == want:
            return None
    return f"{row} at {stamp} is no prefix's latest row"


def _check_aggregates(
    view: ViewSpec, reply: Reply, i: int, history: EntityHistory, complete: bool
) -> str | None:
    """None when the row is one prefix's values (`complete`: all the events'); MIXED
    when each tile size's aggregations are some prefix's values but not the same one
    (each tile size is its own Redis key, written by its own script call); else why
    the row is wrong."""
    row = {a.name: reply.columns[a.name].values[i] for a in view.aggregations}
    n = len(history.events)
    times = (reply.before_us, reply.after_us)  # the server's t lies in between
    if complete:
        if any(all(same(row[a.name], history.value(n, a, t)) for a in view.aggregations) for t in times):
            return None
    elif any(history.matching_prefix(view.aggregations, row, t) is not None for t in times):
        return None
    else:
        sizes: dict[int, list[Any]] = {}
        for a in view.aggregations:
            sizes.setdefault(tile_size_s(a.window_s, a.slide_s), []).append(a)
        if all(_size_ok(aggs, reply, i, row, history) for aggs in sizes.values()):
            return MIXED
    want = {a.name: history.value(n, a, reply.after_us) for a in view.aggregations}
    return f"{row} is no prefix's value (all events: {want})"


def _size_ok(aggs: list[Any], reply: Reply, i: int, row: dict[str, Any], history: EntityHistory) -> bool:
    if {reply.columns[a.name].statuses[i] for a in aggs} == {"NOT_FOUND"}:
        return True  # this tile size's key has nothing yet
    times = (reply.before_us, reply.after_us)
    return any(history.matching_prefix(aggs, row, t) is not None for t in times)
