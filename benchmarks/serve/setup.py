"""What `featureline bench serve` needs before it measures: a private Redis, the repo
applied to Feast's registry, the same data for both servers, and both servers running.

Latest values of plain views are written by Feast itself (`write_to_online_store`), so
both servers read Feast-written rows; tiles of aggregating views are written in the
shared core's tile layout (Feast cannot serve those, so they are measured for us only).
"""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from featureline.aggregations import AggState
from featureline.errors import ServiceUnavailableError
from featureline.online.feast_format import redis_key
from featureline.online.tiles import encode_tile, tile_field, tile_key, tile_parts
from featureline.semantics import US, tile_start_us
from featureline.settings import Settings
from featureline.specs import RepoSpec, ViewSpec

# Events per aggregating-view entity over the last 24 h: a card used ~8 times a day.
EVENTS_PER_ENTITY = 8


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()

    def tail(self, lines: int = 3) -> str:
        """The last lines of its log (the error, without a child's whole traceback)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.strip().splitlines()[-lines:]) + f"\n(log: {self.log})"


def spawn(
    name: str, argv: list[str], settings: Settings, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Proc:
    log = settings.home / f"{name}.log"
    env = {**os.environ, **settings.env_vars(), "FEATURELINE_HOME": str(settings.home), **(env or {})}
    with open(log, "wb") as out:
        popen = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    return Proc(name, popen, log)


def wait_port(proc: Proc, host: str, port: int, timeout_s: float = 120.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise ServiceUnavailableError(f"{proc.name} exited at startup:\n{proc.tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise ServiceUnavailableError(f"{proc.name} did not open port {port} in {timeout_s:.0f} s")


def start_redis(settings: Settings) -> Proc:
    from featureline.cli.devstack import redis_binary

    argv = [str(redis_binary()), "--port", str(settings.redis_port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(settings.home)]  # fmt: skip
    proc = spawn("redis", argv, settings)
    wait_port(proc, "127.0.0.1", settings.redis_port, 30)
    return proc


def bench_settings(base: Settings, home: Path) -> Settings:
    from featureline.cli.devstack import free_port

    home.mkdir(parents=True, exist_ok=True)
    return dataclasses.replace(
        base, home=home.resolve(), redis_host="127.0.0.1", redis_port=free_port(),
        registry_url="",
    )  # fmt: skip


def feast_apply(settings: Settings) -> Any:
    """`featureline apply` (feast apply) into the bench's registry; Feast's FeatureStore."""
    from featureline.cli.commands.apply import apply_repo

    apply_repo(settings)
    from feast import FeatureStore

    return FeatureStore(repo_path=str(settings.repo.resolve()))


def entity_values(repo: RepoSpec, users: int) -> dict[str, list[Any]]:
    """Join key -> the values of its entities: integer keys 1..users (card holders),
    string keys "<entity>-<i>", a tenth as many (merchants)."""
    out: dict[str, list[Any]] = {}
    for entity in repo.entities.values():
        if entity.dtype in ("int64", "int32"):
            out[entity.join_key] = list(range(1, users + 1))
        else:
            out[entity.join_key] = [f"{entity.name}-{k}" for k in range(max(1, users // 10))]
    return out


def random_value(dtype: str, rng: random.Random) -> Any:
    if dtype in ("float64", "float32"):
        return round(rng.uniform(0, 500), 2)
    if dtype in ("int64", "int32"):
        return rng.randrange(0, 5000)
    if dtype == "bool":
        return rng.random() < 0.5
    return rng.choice(["DE", "FR", "NL", "US", "GB"])


def _plain_frame(view: ViewSpec, keys: dict[str, list[Any]], rng: random.Random) -> Any:
    import pandas as pd

    key_names = view.join_key_names
    rows = list(zip(*(keys[k] for k in key_names), strict=False))
    now = pd.Timestamp.now(tz="UTC")
    data: dict[str, Any] = {k: [r[i] for r in rows] for i, k in enumerate(key_names)}
    for f in view.features:
        data[f.name] = [random_value(f.dtype, rng) for _ in rows]
    # Ages spread within the ttl (an hour to a day old), so every value is served.
    ages = [pd.Timedelta(seconds=rng.randrange(3600, 86_400)) for _ in rows]
    data[view.timestamp_field or "event_timestamp"] = [now - a for a in ages]
    # Feast reads the created column of the batch source, also for stream views.
    batch = view.batch_source or (view.stream_source.batch_source if view.stream_source else None)
    for created in {view.created_timestamp_column, batch.created_timestamp_column if batch else ""}:
        if created:
            data[created] = now
    return pd.DataFrame(data)


def load_plain(store: Any, repo: RepoSpec, keys: dict[str, list[Any]], seed: int) -> int:
    """Latest values of every plain online view, written by Feast; returns rows written."""
    rng = random.Random(seed)
    written = 0
    for view in repo.views.values():
        if view.is_aggregating or not view.online:
            continue
        frame = _plain_frame(view, keys, rng)
        store.write_to_online_store(view.name, frame)
        written += len(frame)
    return written


def _entity_tiles(
    view: ViewSpec, key_values: tuple[Any, ...], keys: dict[str, list[Any]], rng: random.Random,
    now_us: int,
) -> dict[int, dict[int, dict[str, AggState]]]:  # fmt: skip
    events = []
    for _ in range(rng.randrange(0, 2 * EVENTS_PER_ENTITY + 1)):
        ts = now_us - rng.randrange(0, 24 * 3600 * US)
        values = {}
        for field in view.input_fields:
            pool = keys.get(field.name)
            values[field.name] = rng.choice(pool) if pool else random_value(field.dtype, rng)
        events.append((ts, values))
    out: dict[int, dict[int, dict[str, AggState]]] = {}
    for tile_s in view.tile_sizes_s():
        columns = tile_parts(view, tile_s)
        tiles: dict[int, dict[str, AggState]] = {}
        for ts, values in events:
            states = tiles.setdefault(tile_start_us(ts, tile_s) // US, {c: AggState() for c in columns})
            for col, parts in columns.items():
                states[col].add(values.get(col), parts=parts)
        out[tile_s] = tiles
    return out


def load_tiles(client: Any, repo: RepoSpec, keys: dict[str, list[Any]], seed: int) -> int:
    """Tiles of every aggregating view (~8 events per entity in the last 24 h)."""
    rng = random.Random(seed)
    now_us = time.time_ns() // 1000
    written = 0
    project_len = len(repo.project.encode())
    for view in repo.views.values():
        if not view.is_aggregating:
            continue
        dtypes = [k.dtype for k in view.join_keys]
        pipe = client.pipeline(transaction=False)
        for key_values in zip(*(keys[k] for k in view.join_key_names), strict=False):
            entity = redis_key(repo.project, view.join_key_names, dtypes, key_values)
            entity = entity[: len(entity) - project_len]
            for tile_s, tiles in _entity_tiles(view, key_values, keys, rng, now_us).items():
                if tiles:
                    mapping = {tile_field(s, 0): encode_tile(st) for s, st in tiles.items()}
                    pipe.hset(tile_key(repo.project, view.name, tile_s, entity), mapping=mapping)
                    written += len(mapping)
        pipe.execute()
    return written


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process (the serve supervisor's workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out
