"""The one module that reaches through PySpark's private JVM gateway (`_jvm`, `_jsc`).

PySpark has no public Python API for two things the batch jobs need: asking whether a
session's SparkContext was stopped (a JVM that died under a long test run or a
notebook), and the Hadoop FileSystem of a path (local, HDFS or s3a:// alike, with the
session's own Hadoop configuration and credentials). Both are read here and nowhere
else, and only on the PySpark version this was written for (the pin, 4.3); on another
version, or when the private names are gone, the public path is taken:
- alive: `SparkSession.getActiveSession()` is this session (a stopped session is no
  longer active; a JVM that died without a stop is then not seen);
- paths: pyarrow's filesystems (local, hdfs://, s3:// for s3a://, gs://), which read
  credentials from the environment rather than from Spark's Hadoop configuration.
tests/batch/test_spark_jvm.py runs both paths on the same paths and compares them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

WRITTEN_FOR = "4.3."
_log = logging.getLogger(__name__)
_warned: list[bool] = []


def gateway_usable(spark: SparkSession) -> bool:
    """True on the PySpark version this module was written for, with its private names."""
    import pyspark

    context = spark.sparkContext
    usable = pyspark.__version__.startswith(WRITTEN_FOR) and all(
        hasattr(context, name) for name in ("_jvm", "_jsc")
    )
    if not usable and not _warned:
        _warned.append(True)
        _log.warning("pyspark %s is not %sx: Spark paths and liveness use public APIs",
                     pyspark.__version__, WRITTEN_FOR)  # fmt: skip
    return usable


def _private(spark: SparkSession, private: bool | None) -> bool:
    """The path to take: as asked (the tests run both), else the gateway when usable."""
    return gateway_usable(spark) if private is None else private


def is_alive(session: SparkSession, *, private: bool | None = None) -> bool:
    """Whether the session's SparkContext still runs."""
    try:
        if _private(session, private):
            context: Any = session.sparkContext
            return not context._jsc.sc().isStopped()
        from pyspark.sql import SparkSession

        return SparkSession.getActiveSession() is session
    except ImportError:
        raise  # pyspark itself missing: the CLI names the extra to install
    except Exception:  # a dead JVM gateway raises anything
        return False


def _hadoop(spark: SparkSession, path: str) -> tuple[Any, Any]:
    context: Any = spark.sparkContext
    hpath = context._jvm.org.apache.hadoop.fs.Path(path)
    return hpath.getFileSystem(context._jsc.hadoopConfiguration()), hpath


def _arrow(path: str) -> tuple[Any, str]:
    from pyarrow import fs

    uri = "s3://" + path[len("s3a://") :] if path.startswith("s3a://") else path
    if "://" not in uri:
        return fs.LocalFileSystem(), uri
    return fs.FileSystem.from_uri(uri)


def _arrow_exists(afs: Any, apath: str) -> bool:
    from pyarrow import fs

    return bool(afs.get_file_info(apath).type != fs.FileType.NotFound)


def path_exists(spark: SparkSession, path: str, *, private: bool | None = None) -> bool:
    if _private(spark, private):
        hfs, hpath = _hadoop(spark, path)
        return bool(hfs.exists(hpath))
    return _arrow_exists(*_arrow(path))


def delete_tree(spark: SparkSession, path: str, *, private: bool | None = None) -> None:
    """Remove `path` and everything below it; nothing when it does not exist."""
    if _private(spark, private):
        hfs, hpath = _hadoop(spark, path)
        if hfs.exists(hpath):
            hfs.delete(hpath, True)
        return
    afs, apath = _arrow(path)
    if _arrow_exists(afs, apath):
        afs.delete_dir(apath)
