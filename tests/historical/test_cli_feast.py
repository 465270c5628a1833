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

from batch.historical import get_historical_features
from featureline.cli import main
from featureline.offline import write_partitioned
from featureline.repo import load_repo
from featureline.settings import Settings

T0 = datetime(2024, 5, 1, tzinfo=UTC)
USERS = 40

DEFINITIONS = """
from datetime import timedelta
from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)
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
training = FeatureService(name="training", features=[user_stats])
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
    # Two days of rows (two date partitions); distinct event times per user, so Feast's
    # tie-breaking defect (anchors.md) does not decide anything here.
    times = rng.sample(range(0, 2 * 86400), 600)
    source = pa.table(
        {
            "user_id": pa.array([rng.randrange(USERS) for _ in times], pa.int64()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=s) for s in times], pa.timestamp("us", "UTC")
            ),
            "created": pa.array([T0 + timedelta(seconds=s + 5) for s in times], pa.timestamp("us", "UTC")),
            "spend": [round(rng.uniform(0, 900), 2) for _ in times],
            "visits": pa.array([rng.randrange(50) for _ in times], pa.int64()),
            "segment": [rng.choice(["a", "b", "c"]) for _ in times],
        }
    )
    write_partitioned(source, offline / "user_stats", ts_column="event_timestamp")
    entity = pa.table(
        {
            "user_id": pa.array([u % USERS for u in range(200)], pa.int64()),
            "event_timestamp": pa.array(
                [T0 + timedelta(seconds=rng.randrange(2 * 86400)) for _ in range(200)],
                pa.timestamp("us", "UTC"),
            ),
            "label": pa.array([rng.randrange(2) for _ in range(200)], pa.int64()),
        }
    )
    pq.write_table(entity, root / "entity.parquet")
    saved = {k: os.environ.get(k) for k in ("FEATURELINE_HOME", "FEATURELINE_OFFLINE_DIR")}
    os.environ["FEATURELINE_HOME"] = str(home)
    os.environ["FEATURELINE_OFFLINE_DIR"] = str(offline)
    try:
        yield {"root": root, "repo": repo, "entity": entity, "entity_path": root / "entity.parquet"}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
    assert ours.column_names == ["user_id", "event_timestamp", "label", "spend", "visits", "segment"]
    assert ours.select(["user_id", "event_timestamp", "label"]).equals(feast_repo["entity"])

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
    # Feast reorders rows, and drops the rows that find no value in the ttl (a defect,
    # anchors.md): compare on the rows it keeps, and check that it kept the others'.
    key = ["user_id", "event_timestamp", "label"]
    mine = ours.to_pandas()
    merged = mine.merge(
        theirs[key + ["spend", "visits", "segment"]], on=key, how="left", suffixes=("", "_feast")
    )
    assert len(merged) == len(mine) == 200
    found = mine["spend"].notna()
    assert found.sum() > 100  # most rows find a value within the 6 h ttl
    assert len(theirs) == found.sum()
    for column in ("spend", "visits", "segment"):
        assert merged.loc[found, column].tolist() == merged.loc[found, f"{column}_feast"].tolist(), column


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
