"""The one guarded use of PySpark's private JVM gateway (batch/spark_jvm.py): on the
pinned version the private path runs, and the public fallback gives the same answers on
the same paths; on another version the public path is taken."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyspark
import pytest

from featureline.batch import spark_jvm
from featureline.batch.spark import get_spark

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def spark() -> Any:
    return get_spark()


def _tree(root: Path) -> dict[str, Path]:
    (root / "date=2026-01-01").mkdir(parents=True)
    (root / "date=2026-01-01" / "part-0.parquet").write_bytes(b"x")
    (root / "date=2026-01-02").mkdir()
    return {"dir": root / "date=2026-01-01", "file": root / "date=2026-01-01" / "part-0.parquet",
            "empty": root / "date=2026-01-02", "missing": root / "date=2026-01-03"}  # fmt: skip


def test_the_pinned_version_takes_the_private_path(spark: Any) -> None:
    assert pyspark.__version__.startswith(spark_jvm.WRITTEN_FOR)
    assert spark_jvm.gateway_usable(spark)
    assert spark_jvm.is_alive(spark, private=True) and spark_jvm.is_alive(spark, private=False)


def test_both_paths_agree_on_existence(spark: Any, tmp_path: Path) -> None:
    paths = _tree(tmp_path)
    for name, path in paths.items():
        for spelled in (str(path), f"file://{path}"):
            private = spark_jvm.path_exists(spark, spelled, private=True)
            public = spark_jvm.path_exists(spark, spelled, private=False)
            assert private == public == (name != "missing"), (name, spelled, private, public)


@pytest.mark.parametrize("private", [True, False])
def test_delete_tree_removes_a_partition_whole(spark: Any, tmp_path: Path, private: bool) -> None:
    paths = _tree(tmp_path)
    spark_jvm.delete_tree(spark, str(paths["dir"]), private=private)
    spark_jvm.delete_tree(spark, str(paths["missing"]), private=private)  # nothing to do
    assert not paths["dir"].exists() and paths["empty"].exists()


def test_another_version_takes_the_public_path(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pyspark, "__version__", "9.0.0")
    assert not spark_jvm.gateway_usable(spark)
    paths = _tree(tmp_path)
    assert spark_jvm.path_exists(spark, str(paths["empty"]))
    assert not spark_jvm.path_exists(spark, str(paths["missing"]))
    spark_jvm.delete_tree(spark, str(paths["dir"]))
    assert not paths["dir"].exists()
    assert spark_jvm.is_alive(spark)
