"""materialize against the real Redis of the dev stack: values byte-identical to the
streaming writer's, newer streamed values never overwritten, forked writers, incremental
marks, and clean errors."""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis
from batch_events import make_events, write_raw

from featureline.batch.materialize import mark_key, materialize
from featureline.cli import main
from featureline.offline import TS_TYPE
from featureline.online.feast_format import decode_value, feature_field, single_key_encoder
from featureline.online.writer import LatestRow, LatestValueWriter
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.settings import Settings
from featureline.specs import RepoSpec

T0 = datetime(2024, 3, 1, tzinfo=UTC)
USERS = 45_000  # enough for two writer processes (one per 20k entities)


def _profiles(n: int, versions: int) -> pa.Table:
    """`versions` rows per user, one a day; the newest has account_age_days = 1000 + user."""
    rng = np.random.default_rng(1)
    users = np.tile(np.arange(n), versions)
    day = np.repeat(np.arange(versions), n)
    stamps = pa.array((int(T0.timestamp()) + day * 86_400) * US).cast(TS_TYPE)
    age = np.where(day == versions - 1, 1000 + users, day)
    limit = rng.random(len(users)) * 1e4
    limit[rng.random(len(users)) < 0.01] = np.nan
    return pa.table(
        {
            "user_id": users,
            "account_age_days": age,
            "home_country": pa.array(np.where(users % 3 == 0, "FR", "DE")),
            "credit_limit": pa.array(limit, from_pandas=True),
            "event_timestamp": stamps,
            "created": stamps,
        }
    )


@dataclasses.dataclass
class Loaded:
    settings: Settings
    repo: RepoSpec
    profiles: pa.Table


@pytest.fixture(scope="module")
def loaded(stack: Settings, demo_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    home = tmp_path_factory.mktemp("materialize")
    settings = dataclasses.replace(
        demo_settings, home=home, offline_dir=str(home / "offline"),
        redis_host=stack.redis_host, redis_port=stack.redis_port,
    )  # fmt: skip
    profiles = _profiles(USERS, 3)
    (settings.resolved_offline_dir / "user_profile").mkdir(parents=True)
    pq.write_table(profiles, settings.resolved_offline_dir / "user_profile" / "p.parquet")
    write_raw(make_events(400), settings.resolved_offline_dir)
    return Loaded(settings, load_repo(settings), profiles)


def _key(repo: RepoSpec, user: int) -> bytes:
    return single_key_encoder(repo.project, "user_id", "int64")(user)


def test_values_equal_streaming_writer_bytes(
    loaded: Loaded, redis_client: redis.Redis, stack: Settings
) -> None:
    """Forked writers (3 x 15k entities), then the same latest rows written by the
    streaming writer into db 1: every hash is byte-identical."""
    report = materialize(loaded.settings, T0, T0 + timedelta(days=5), views=["user_profile"], workers=3)
    assert report.ok, report
    (result,) = report.results
    assert (result.rows_read, result.entities, result.written) == (3 * USERS, USERS, USERS)
    view = loaded.repo.view("user_profile")
    newest = loaded.profiles.slice(2 * USERS).to_pylist()
    reference = redis.Redis(host=stack.redis_host, port=stack.redis_port, db=1)
    reference.flushdb()
    rows = [
        LatestRow(_key(loaded.repo, r["user_id"]), _us(r["event_timestamp"]), _us(r["created"]),
                  {f: r[f] for f in view.feature_names})
        for r in newest[::97]
    ]  # fmt: skip
    LatestValueWriter(reference, view).write(rows)
    for row in rows:
        assert redis_client.hgetall(row.redis_key) == reference.hgetall(row.redis_key)
    age = feature_field("user_profile", "account_age_days")
    assert decode_value(redis_client.hget(_key(loaded.repo, 44_999), age)) == 1000 + 44_999
    reference.flushdb()
    reference.close()


def _us(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def test_never_overwrites_a_newer_streamed_value(loaded: Loaded, redis_client: redis.Redis) -> None:
    view = loaded.repo.view("user_profile")
    writer = LatestValueWriter(redis_client, view)  # what the streaming job writes with
    later = _us(T0 + timedelta(days=10))
    earlier = _us(T0 - timedelta(days=10))
    values = {"account_age_days": -5, "home_country": "XX", "credit_limit": 1.0}
    writer.write([LatestRow(_key(loaded.repo, 7), later, later, values)])
    writer.write([LatestRow(_key(loaded.repo, 8), earlier, earlier, values)])
    report = materialize(loaded.settings, T0, T0 + timedelta(days=5), views=["user_profile"], workers=1)
    assert report.results[0].written == USERS - 1  # user 7 kept its newer value
    age = feature_field("user_profile", "account_age_days")
    assert decode_value(redis_client.hget(_key(loaded.repo, 7), age)) == -5
    assert decode_value(redis_client.hget(_key(loaded.repo, 8), age)) == 1008


def test_incremental_runs_from_the_last_end(loaded: Loaded, redis_client: redis.Redis) -> None:
    now = T0 + timedelta(days=4)
    first = materialize(loaded.settings, incremental=True, views=["user_profile"], now=now)
    (r,) = first.results
    assert r.start_us == _us(now - timedelta(days=3650)) and r.end_us == _us(now)
    assert r.entities == USERS
    assert int(redis_client.get(mark_key(loaded.repo.project, "user_profile"))) == _us(now)
    later = now + timedelta(hours=1)
    second = materialize(loaded.settings, incremental=True, views=["user_profile"], now=later)
    (r,) = second.results
    assert (r.start_us, r.end_us, r.rows_read) == (_us(now), _us(later), 0)
    redis_client.flushdb()  # a Redis that lost its data lost the marks too: full range again
    third = materialize(loaded.settings, incremental=True, views=["user_profile"], now=later)
    assert third.results[0].entities == USERS


def test_cli_errors_are_clean(
    loaded: Loaded, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in loaded.settings.env_vars().items():
        monkeypatch.setenv(key, value)
    assert main(["materialize", "--repo", str(loaded.settings.repo)]) == 2
    assert "--incremental" in capsys.readouterr().err
    assert main(["materialize", "--repo", str(loaded.settings.repo), "--incremental", "--views", "nope"]) == 2
    assert "unknown feature view 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["backfill", "--start", "last tuesday", "--end", "2024-01-02"])
    assert "not an ISO 8601 time" in capsys.readouterr().err
    assert (
        main(
            ["backfill", "--repo", str(loaded.settings.repo), "--start", "2024-01-02", "--end", "2024-01-01"]
        )
        == 2
    )
    assert "must be after" in capsys.readouterr().err


def test_tiles_are_rebuilt_whole(loaded: Loaded, redis_client: redis.Redis) -> None:
    """Rebuilding twice leaves the same tiles (SET, not increment)."""
    now = T0 + timedelta(days=2)
    args = dict(views=["merchant_txn_stats"], now=now)
    first = materialize(loaded.settings, T0, now, **args)
    assert first.ok and first.results[0].written > 0
    snap = {k: redis_client.hgetall(k) for k in redis_client.scan_iter(match=b"fl:tile:*")}
    again = materialize(loaded.settings, T0, now, **args)
    assert again.results[0].written == first.results[0].written
    assert {k: redis_client.hgetall(k) for k in redis_client.scan_iter(match=b"fl:tile:*")} == snap
    assert first.watermarks == {}  # not every view of the topic was rebuilt: marks untouched


def test_materialized_values_read_through_serving_equal_the_oracle(
    loaded: Loaded, redis_client: redis.Redis
) -> None:
    """Rows at the range's edges (start counts, end does not: Feast's [start, end)),
    equal event times decided by created time, a null in the winning row, several
    rows a user: what the serving path reads back equals the oracle's winning row."""
    from oracle.naive import Event, latest_row, same

    from featureline.cli.consistency.run import read_online
    from featureline.cli.consistency.sample import EntityGroup

    rng = random.Random(5)
    view = loaded.repo.view("user_profile")
    start, end = _us(T0), _us(T0 + timedelta(days=1))
    grid = [start - 1, start, start + 1, end - 1, end, end + 1] + [start + rng.randrange(end - start)
                                                                  for _ in range(4)]  # fmt: skip
    rows: dict[tuple[int, int, int | None], dict[str, Any]] = {}
    for _ in range(600):
        user, ts = rng.randrange(150), rng.choice(grid)
        created = rng.choice([None, ts, ts + US, ts + 2 * US])
        rows[(user, ts, created)] = {  # (user, event, created) unique: no undecidable tie
            "user_id": user,
            "account_age_days": rng.choice([None, rng.randrange(5000)]),
            "home_country": rng.choice([None, "FR", "DE"]),
            "credit_limit": rng.choice([None, 0.1, 1e16, round(rng.uniform(0, 1e4), 2)]),
            "event_timestamp": ts,
            "created": created,
        }
    table = pa.Table.from_pylist(list(rows.values())).cast(pa.schema([
        ("user_id", pa.int64()), ("account_age_days", pa.int64()), ("home_country", pa.string()),
        ("credit_limit", pa.float64()), ("event_timestamp", pa.int64()), ("created", pa.int64()),
    ]))  # fmt: skip
    for name in ("event_timestamp", "created"):
        table = table.set_column(table.column_names.index(name), name, table[name].cast(TS_TYPE))
    settings = dataclasses.replace(loaded.settings, offline_dir=str(loaded.settings.home / "edges"))
    (settings.resolved_offline_dir / "user_profile").mkdir(parents=True)
    pq.write_table(table, settings.resolved_offline_dir / "user_profile" / "p.parquet")
    report = materialize(settings, T0, T0 + timedelta(days=1), views=["user_profile"], workers=1)
    assert report.ok, report
    in_range = [
        Event((r["user_id"],), r["event_timestamp"], r["created"], r)
        for r in rows.values()
        if start <= r["event_timestamp"] < end  # materialize's range, Feast's [start, end)
    ]
    users = sorted({r["user_id"] for r in rows.values()})
    group = EntityGroup(view.join_keys, tuple(f"user_profile:{f}" for f in view.feature_names), (view,))
    got = read_online(settings, loaded.repo, group, [(u,) for u in users], end)
    checked = 0
    for i, user in enumerate(users):
        win = latest_row(in_range, (user,), end - 1, 0)
        for f in view.feature_names:
            want = None if win is None else win.values[f]
            assert same(got[f"user_profile__{f}"][i], want), (user, f, got[f"user_profile__{f}"][i], want)
            checked += want is not None
    assert checked > 100
