"""spark-submit of a historical retrieval to a Spark standalone master + worker on
loopback (the deploy path of deploy/spark/README.md): same result as the local engine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hist_data import AGGS, generate
from spark_cluster import StandaloneCluster

from featureline.batch.historical import get_historical_features
from featureline.batch.spark import JAVA_OPTIONS_VAR, spark_home
from featureline.repo import source_fingerprint
from featureline.settings import Settings
from featureline.specs import RepoSpec

FEATURES = ["profile:score", "profile:tier", "pair:pair_amount"] + [f"txn_stats:{a.name}" for a in AGGS[:5]]
REPO_ROOT = Path(__file__).resolve().parents[2]


def _cache_specs(repo: RepoSpec, env: dict[str, str]) -> None:
    """The job runs the real CLI, which loads the repo's specs through featureline.repo's
    cache: put the test's specs there for a repo dir, so the driver needs no Feast."""
    settings = Settings.from_env(env)
    settings.repo.mkdir()
    (settings.repo / "feature_store.yaml").write_text("project: hist_test\n")
    cache = settings.home / "specs" / f"{source_fingerprint(settings)}.json"
    cache.parent.mkdir(parents=True)
    cache.write_text(repo.to_json())


@pytest.mark.spark
@pytest.mark.slow
def test_spark_submit_to_standalone_cluster(spark_standalone: StandaloneCluster, tmp_path: Path) -> None:
    master_url = spark_standalone.master_url
    earlier_apps = spark_standalone.applications()  # the session's cluster: other tests' too
    data = generate(tmp_path / "offline", seed=21, n=150)
    entity_path = tmp_path / "entity.parquet"
    pq.write_table(data.entity, entity_path)
    out = tmp_path / "train.parquet"
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "FEATURELINE_REPO": str(tmp_path / "repo"),
        "FEATURELINE_HOME": str(tmp_path / "home"),
        "FEATURELINE_OFFLINE_DIR": str(tmp_path / "offline"),
    }
    _cache_specs(data.repo, env)
    cmd = [
        str(Path(spark_home()) / "bin" / "spark-submit"),
        "--master",
        master_url,
        "--conf",
        "spark.executor.memory=512m",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
        # spark-submit starts the driver's JVM: the conftest's short-run settings given
        # here (Featureline sets only the executors' JVM options under spark-submit).
        "--driver-java-options",
        os.environ.get(JAVA_OPTIONS_VAR, ""),
        str(REPO_ROOT / "batch" / "historical" / "submit.py"),
        "--entity-df",
        str(entity_path),
        "--features",
        ",".join(FEATURES),
        "--out",
        str(out),
    ]
    started = time.monotonic()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    print(f"spark-submit took {time.monotonic() - started:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    # The work ran in an executor the worker launched for this application.
    assert spark_standalone.applications() - earlier_apps
    got = pq.read_table(out)
    want = get_historical_features(data.entity, FEATURES, repo=data.repo)
    assert got.equals(want)
