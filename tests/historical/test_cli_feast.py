"""`featureline historical` on a real Feast repo, and Feast's own get_historical_features
reading the same date-partitioned offline store (it stays a valid Feast FileSource).

One module-scoped Feast repo; `import feast` (~5 s) happens once here.
"""

from __future__ import annotations

import os
import random
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
from oracle.naive import Event, PlainView, latest_row, point_in_time_join, same, to_us

from featureline.batch.historical import get_historical_features
from featureline.cli import main
from featureline.offline import write_partitioned
from featureline.repo import load_repo
from featureline.settings import Settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)
USERS = 40
MERCHANTS = 6


def _same_cell(ours: Any, feast: Any) -> bool:
    """Our value against Feast's pandas cell: Feast's frame has NaN/None/pd.NA for null
    and floats for an int column with nulls."""
    import pandas as pd

    if ours is None:
        return feast is None or bool(pd.isna(feast))
    if feast is None or (not isinstance(feast, str) and bool(pd.isna(feast))):
        return False
    return bool(ours == feast)


DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
stats_source = FileSource(
    name="stats_source",
    path="{offline}/user_stats",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
user_stats = FeatureView(
    name="user_stats",
    entities=[user],
    ttl=timedelta(hours=6),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="spend", dtype=Float64),
        Field(name="visits", dtype=Int64),
        Field(name="segment", dtype=String),
    ],
    source=stats_source,
)
pair_source = FileSource(
    name="pair_source",
    path="{offline}/user_merchant",
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created",
)
user_merchant = FeatureView(
    name="user_merchant",
    entities=[user, merchant],
    ttl=timedelta(hours=12),
    schema=[
        Field(name="user_id", dtype=Int64),
        Field(name="merchant_id", dtype=String),
        Field(name="n_txn", dtype=Int64),
        Field(name="amount", dtype=Float64),
    ],
    source=pair_source,
)
training = FeatureService(name="training", features=[user_stats, user_merchant])
"""


@pytest.fixture(scope="module")
def feast_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("feast_repo")
    repo, offline, home = root / "repo", root / "offline", root / "home"
    repo.mkdir()
    (repo / "feature_store.yaml").write_text(
        textwrap.dedent(f"""\
        project: hist_cli
        provider: local
        registry:
          registry_type: sql
          path: sqlite:///{root / "registry.db"}
        online_store:
          type: sqlite
          path: {root / "online.db"}
        offline_store:
          type: file
        entity_key_serialization_version: 3
        """)
    )
    (repo / "definitions.py").write_text(DEFINITIONS.replace("{offline}", str(offline)))
    rng = random.Random(11)
    sources = _sources(rng)
    write_partitioned(sources["user_stats"], offline / "user_stats", ts_column="event_timestamp")
    write_partitioned(sources["user_merchant"], offline / "user_merchant", ts_column="event_timestamp")
    entity = pa.table(
        {
            "user_id": pa.array([u % USERS for u in range(200)], pa.int64()),
            "merchant_id": [f"m{rng.randrange(MERCHANTS)}" for _ in range(200)],
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=rng.randrange(2 * 86400)) for _ in range(200)],
                pa.timestamp("us", "UTC"),
            ),
            "label": pa.array(range(200), pa.int64()),  # unique: Feast's output is merged on it
        }
    )
    pq.write_table(entity, root / "entity.parquet")
    saved = {k: os.environ.get(k) for k in ("FEATURELINE_HOME", "FEATURELINE_OFFLINE_DIR")}
    os.environ["FEATURELINE_HOME"] = str(home)
    os.environ["FEATURELINE_OFFLINE_DIR"] = str(offline)
    try:
        yield {"root": root, "repo": repo, "entity": entity, "entity_path": root / "entity.parquet",
               "sources": sources}  # fmt: skip
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _sources(rng: random.Random) -> dict[str, pa.Table]:
    """Two days of rows in two date partitions, with the parity's edge cases: equal event
    times of one key with different created times (the larger created time wins; Feast
    does not always take it, anchors.md), nulls in the winning row, and a compound-key
    view (user, merchant)."""
    stats = []
    for s in rng.sample(range(0, 2 * 86400), 600):
        stats.append({"user_id": rng.randrange(USERS), "s": s, "c": s + 5,
                      "spend": None if rng.random() < 0.1 else round(rng.uniform(0, 900), 2),
                      "visits": None if rng.random() < 0.05 else rng.randrange(50),
                      "segment": rng.choice(["a", "b", "c", None])})  # fmt: skip
    for row in rng.sample(stats, 80):  # ties: same key and event time, other created time
        stats.append({**row, "c": row["c"] + rng.choice([-3, 4]), "spend": round(rng.uniform(0, 900), 2),
                      "segment": rng.choice(["x", None])})  # fmt: skip
    pairs = [{"user_id": rng.randrange(USERS), "merchant_id": f"m{rng.randrange(MERCHANTS)}",
              "s": s, "c": s + 1, "n_txn": rng.choice([None, rng.randrange(9)]),
              "amount": rng.choice([None, 0.1, round(rng.uniform(1, 99), 2)])}
             for s in rng.sample(range(0, 2 * 86400), 400)]  # fmt: skip
    for row in rng.sample(pairs, 40):
        pairs.append({**row, "c": row["c"] + 2, "n_txn": 100})

    def table(rows: list[dict[str, Any]], columns: dict[str, pa.DataType]) -> pa.Table:
        data = {name: pa.array([r[name] for r in rows], t) for name, t in columns.items()}
        data["event_timestamp"] = pa.array([T0 + timedelta(seconds=r["s"]) for r in rows],
                                           pa.timestamp("us", "UTC"))  # fmt: skip
        data["created"] = pa.array([T0 + timedelta(seconds=r["c"]) for r in rows], pa.timestamp("us", "UTC"))
        return pa.table(data)

    return {
        "user_stats": table(stats, {"user_id": pa.int64(), "spend": pa.float64(), "visits": pa.int64(),
                                    "segment": pa.string()}),
        "user_merchant": table(pairs, {"user_id": pa.int64(), "merchant_id": pa.string(),
                                       "n_txn": pa.int64(), "amount": pa.float64()}),
    }  # fmt: skip


VIEWS = {"user_stats": (("user_id",), ("spend", "visits", "segment"), 6 * 3600),
         "user_merchant": (("user_id", "merchant_id"), ("n_txn", "amount"), 12 * 3600)}  # fmt: skip
FEATURES = ["spend", "visits", "segment", "n_txn", "amount"]


def _oracle(feast_repo: dict[str, Any]) -> tuple[list[dict[str, Any]], list[bool]]:
    """The naive oracle's rows for the entity frame, and per row whether a tie on event
    time decided any view's winning row (where Feast may take another row)."""
    views, ties = [], []
    for name, (keys, features, ttl_s) in VIEWS.items():
        rows = feast_repo["sources"][name].to_pylist()
        events = [Event(tuple(r[k] for k in keys), to_us(r["event_timestamp"]), to_us(r["created"]), r)
                  for r in rows]  # fmt: skip
        views.append(PlainView(keys, features, ttl_s, events))
        tied = {}
        for e in events:
            tied[(e.keys, e.event_us)] = (e.keys, e.event_us) in tied
        ties.append((keys, ttl_s, events, tied))
    requests = feast_repo["entity"].to_pylist()
    want = point_in_time_join(requests, "event_timestamp", views)
    decided_by_tie = []
    for request in requests:
        t_us = to_us(request["event_timestamp"])
        hit = False
        for keys, ttl_s, events, tied in ties:
            win = latest_row(events, tuple(request[k] for k in keys), t_us, ttl_s)
            hit = hit or (win is not None and tied[(win.keys, win.event_us)])
        decided_by_tie.append(hit)
    return want, decided_by_tie


def _cli(feast_repo: dict[str, Any], *args: str) -> int:
    return main(["historical", "--repo", str(feast_repo["repo"]), *args])


def test_cli_writes_training_set_and_feast_reads_the_same_store(
    feast_repo: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = feast_repo["root"] / "train.parquet"
    code = _cli(
        feast_repo,
        "--entity-df",
        str(feast_repo["entity_path"]),
        "--feature-service",
        "training",
        "--out",
        str(out),
    )
    assert code == 0
    ours = pq.read_table(out)
    assert ours.column_names == ["user_id", "merchant_id", "event_timestamp", "label", *FEATURES]
    assert ours.select(["user_id", "merchant_id", "event_timestamp", "label"]).equals(feast_repo["entity"])
    # Every row against the naive oracle (tests/oracle/naive.py), exactly, with types.
    want, decided_by_tie = _oracle(feast_repo)
    got = ours.to_pylist()
    assert len(got) == len(want) == 200
    for g, w in zip(got, want, strict=True):
        assert all(same(g[f], w[f]) for f in FEATURES), (g, w)
    assert sum(decided_by_tie) >= 5  # the ties decide rows here
    assert sum(w["segment"] is None and w["spend"] is not None for w in want) >= 3  # nulls that won

    from feast import FeatureStore
    from feast.repo_operations import parse_repo

    monkeypatch.chdir(feast_repo["repo"])  # Feast resolves definition files against the cwd
    contents = parse_repo(feast_repo["repo"])
    store = FeatureStore(repo_path=str(feast_repo["repo"]))
    store.apply(
        [*contents.entities, *contents.data_sources, *contents.feature_views, *contents.feature_services]
    )
    theirs = store.get_historical_features(
        entity_df=feast_repo["entity"].to_pandas(), features=store.get_feature_service("training")
    ).to_df()
    # Feast reorders rows and drops some (anchors.md): compare on the rows it keeps. On
    # those, every value must equal ours, except where a tie on event time decided the
    # winning row (Feast's tie-break defect, anchors.md); ours equals the oracle there.
    theirs_by_label = {int(r["label"]): r for r in theirs.to_dict("records")}
    assert len(theirs_by_label) > 60
    differ = []
    for i, g in enumerate(got):
        f = theirs_by_label.get(g["label"])
        if f is None:
            continue
        if not all(_same_cell(g[c], f[c]) for c in FEATURES):
            differ.append(i)
    unexplained = [(got[i], theirs_by_label[got[i]["label"]]) for i in differ if not decided_by_tie[i]]
    assert unexplained == []


def test_csv_entity_df_with_full_feature_names(feast_repo: dict[str, Any]) -> None:
    csv_path = feast_repo["root"] / "entity.csv"
    pcsv.write_csv(feast_repo["entity"], csv_path)
    out = feast_repo["root"] / "train_full.parquet"
    code = _cli(
        feast_repo,
        "--entity-df",
        str(csv_path),
        "--features",
        "user_stats:spend,user_stats:segment",
        "--full-feature-names",
        "--out",
        str(out),
    )
    assert code == 0
    from_csv = pq.read_table(out)
    from_parquet = get_historical_features(
        feast_repo["entity"],
        ["user_stats:spend"],
        repo=load_repo(Settings.from_env().with_repo(feast_repo["repo"])),
    )
    assert from_csv.column_names[-2:] == ["user_stats__spend", "user_stats__segment"]
    assert from_csv.column("user_stats__spend").equals(from_parquet.column("spend"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "nope:spend"], "'nope'"),
        (["--features", "user_stats:nope"], "'nope'"),
        (["--features", "user_stats:spend", "--timestamp-column", "when"], "'when'"),
        (["--feature-service", "missing"], "'missing'"),
    ],
)
def test_cli_bad_input_exit_2_and_no_out_file(
    feast_repo: dict[str, Any], args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = feast_repo["root"] / "bad.parquet"
    code = _cli(feast_repo, "--entity-df", str(feast_repo["entity_path"]), "--out", str(out), *args)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
    assert not list(out.parent.glob(".bad.parquet*"))


def test_cli_wrong_key_type_missing_key_and_empty_frame(
    feast_repo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = feast_repo["root"]
    entity = feast_repo["entity"]
    frames = {
        "wrong": (
            entity.set_column(0, "user_id", pa.array([str(i) for i in range(200)])),
            "'user_id' has type string",
        ),
        "nokey": (entity.drop_columns(["user_id"]), "no column 'user_id'"),
        "empty": (entity.slice(0, 0), "empty"),
    }
    for name, (frame, needle) in frames.items():
        pq.write_table(frame, root / f"{name}.parquet")
        out = root / f"out_{name}.parquet"
        out.write_bytes(b"an older result")  # a failed run must leave it as it was
        code = _cli(
            feast_repo,
            "--entity-df",
            str(root / f"{name}.parquet"),
            "--features",
            "user_stats:spend",
            "--out",
            str(out),
        )
        assert code == 2, name
        assert needle in capsys.readouterr().err, name
        assert out.read_bytes() == b"an older result"
