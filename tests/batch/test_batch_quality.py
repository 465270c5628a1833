"""materialize checks the rows it reads against the views' data-quality expectations
(featureline.expectations): violations are reported per view, and with
`--fail-on-violation` a breaking view is not written (exit 1) while the others are."""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from benchmarks.stream.repo import isolated_repo
from featureline.batch.materialize import mark_key
from featureline.cli import main
from featureline.offline import TS_TYPE
from featureline.semantics import US
from featureline.settings import Settings

DEMO_REPO = Path(__file__).resolve().parents[2] / "feature_repo"
T0_S = 1_709_251_200  # 2024-03-01
_LIMIT = '        Field(name="credit_limit", dtype=Float64),\n'
_COUNTRY = '        Field(name="home_country", dtype=String),\n'


def _profiles() -> pa.Table:
    users = np.arange(1000)
    limit = np.where(users % 100 == 7, 9_000.0, 1_000.0)  # 10 users over the max 5000
    country = np.where(users == 3, "XX", np.where(users % 2 == 0, "FR", "DE"))
    stamps = pa.array((T0_S + users) * US).cast(TS_TYPE)
    return pa.table({"user_id": users, "account_age_days": users, "home_country": country,
                     "credit_limit": limit, "event_timestamp": stamps, "created": stamps})  # fmt: skip


@pytest.fixture
def quality_settings(stack: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = isolated_repo(
        dataclasses.replace(stack, repo=DEMO_REPO), tmp_path, f"dq{uuid.uuid4().hex[:6]}"
    )
    settings = dataclasses.replace(settings, home=tmp_path / "home")
    features = settings.repo / "features.py"
    text = features.read_text()
    assert _LIMIT in text and _COUNTRY in text
    text = text.replace(_LIMIT, _LIMIT.replace("Float64)", 'Float64, tags={"dq.max": "5000"})'))
    text = text.replace(_COUNTRY, _COUNTRY.replace("String)", 'String, tags={"dq.allowed": "FR,DE"})'))
    features.write_text(text)
    (settings.resolved_offline_dir / "user_profile").mkdir(parents=True)
    pq.write_table(_profiles(), settings.resolved_offline_dir / "user_profile" / "p.parquet")
    for key, value in settings.env_vars().items():
        monkeypatch.setenv(key, value)
    return settings


def _materialize(settings: Settings, *flags: str) -> int:
    argv = ["materialize", "--repo", str(settings.repo), "--start", "2024-02-01", "--end", "2024-04-01"]
    return main([*argv, "--views", "user_profile", *flags])


def test_violations_are_reported_or_fail_the_view(
    quality_settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    from featureline.repo import load_repo

    project = load_repo(quality_settings).project
    assert _materialize(quality_settings, "--fail-on-violation") == 1
    out = capsys.readouterr().out
    assert "error: data-quality expectations broken (--fail-on-violation), nothing written" in out
    assert "credit_limit: 10 row(s) break max 5000" in out
    assert "home_country: 1 row(s) break allowed FR,DE" in out
    assert redis_client.get(mark_key(project, "user_profile")) is None
    assert not redis_client.keys(f"*{project}*")  # nothing of the view written

    assert _materialize(quality_settings) == 0
    out = capsys.readouterr().out
    assert "data quality: user_profile: credit_limit: 10 row(s) break max 5000" in out
    assert "data quality: user_profile: home_country: 1 row(s) break allowed FR,DE" in out
    assert redis_client.get(mark_key(project, "user_profile")) is not None
    assert len(redis_client.keys(f"*{project}*")) == 1000 + 1  # every user, and the mark


def test_backfill_reports_or_fails_on_violations(
    quality_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    from batch_events import make_events, write_raw

    from featureline.offline import read_table

    features = quality_settings.repo / "features.py"
    text = features.read_text()
    last = text.index("user_last_txn = StreamFeatureView(")
    amount = '        Field(name="amount", dtype=Float64),\n'
    at = text.index(amount, last)
    tagged = amount.replace("Float64)", 'Float64, tags={"dq.max": "300"})')
    features.write_text(text[:at] + tagged + text[at + len(amount) :])
    events = make_events(300, span_s=86_400, seed=5)
    write_raw(events, quality_settings.resolved_offline_dir)  # the demo's raw path
    unique = {(r["kafka_partition"], r["kafka_offset"]): r["amount"] for r in events.to_pylist()}
    over = sum(1 for a in unique.values() if a is not None and a > 300)
    assert over > 0
    argv = ["backfill", "--repo", str(quality_settings.repo), "--start", "2024-03-01", "--end", "2024-03-03",
            "--views", "user_last_txn"]  # fmt: skip
    assert main([*argv, "--fail-on-violation"]) == 1
    out = capsys.readouterr().out
    assert f"data quality: user_last_txn: amount: {over} row(s) break max 300" in out
    assert not (quality_settings.resolved_offline_dir / "user_last_txn").exists()
    assert main(argv) == 0
    assert f"data quality: user_last_txn: amount: {over} row(s) break max 300" in capsys.readouterr().out
    assert read_table(quality_settings.resolved_offline_dir / "user_last_txn").num_rows == len(unique)
