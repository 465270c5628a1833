"""The one shared Spark session of a process, tuned for a small machine.

Starting a Spark session costs ~10-20 s (a JVM), so every batch job and every test
in a run shares one (`get_spark()` is a singleton). The defaults suit this 2-core
machine: `local[2]`, few shuffle partitions (Spark's default of 200 makes a 1k-row
join run 200 tiny tasks, ~100x slower than 4), UTC session time zone (semantics.md:
instants compared as UTC), Arrow for pandas/pyarrow transfer, no web UI, WARN logs.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from featureline.batch.spark_jvm import is_alive
from featureline.errors import ServiceUnavailableError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_MASTER = "local[2]"
DEFAULT_APP_NAME = "featureline"
# 4 = 2 cores x 2: enough to keep both cores busy with some skew, without the per-task
# overhead (~5-20 ms each) of Spark's default 200 partitions.
SHUFFLE_PARTITIONS = 4

# Driver heap: local mode runs the executors inside the driver JVM; Spark's 1g default
# spills a 10M-row join constantly. Override with $FEATURELINE_SPARK_DRIVER_MEMORY.
DEFAULT_DRIVER_MEMORY = "2g"
# Extra JVM options of the driver (local mode: the executors too) and of the executors
# of a cluster, appended to ours. For short runs on small data (tests, the demo) the
# C1-only JIT and the serial GC start and warm up faster on 2 cores: measured on the
# demo's 4,000-event backfill, JVM start 9.5-11 s -> 6.3 s and the first backfill
# 30-32 s -> 17-20 s. Long jobs on big data want C2: unset by default.
JAVA_OPTIONS_VAR = "FEATURELINE_SPARK_JAVA_OPTIONS"
SHORT_RUN_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
# Spark's INFO logs print ~40 lines per job; only warnings and errors reach stderr.
_LOG4J2 = """\
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.hadoop.name = org.apache.hadoop.util.NativeCodeLoader
logger.hadoop.level = error
"""

_lock = threading.Lock()
_session: SparkSession | None = None
_session_master: str | None = None  # None: the master spark-submit chose


def spark_home() -> str:
    """SPARK_HOME for spark-submit / spark-class: the pyspark package directory."""
    import pyspark

    return os.path.dirname(pyspark.__file__)


def log4j_config() -> Path:
    """A quiet log4j2 config file (written once per machine, in the temp dir)."""
    path = Path(tempfile.gettempdir()) / "featureline-log4j2.properties"
    if not path.is_file() or path.read_text() != _LOG4J2:
        tmp = path.with_name(f"{path.name}.{os.getpid()}")
        tmp.write_text(_LOG4J2)
        tmp.replace(path)
    return path


def under_spark_submit() -> bool:
    """True when this Python process was started by spark-submit (its JVM already runs)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def base_conf(master: str | None) -> dict[str, str]:
    """The settings every Featureline Spark session gets. master None: keep what
    spark-submit set (master, driver memory and address are the submitter's choice)."""
    java_opts = f"-Dio.netty.tryReflectionSetAccessible=true -Dlog4j.configurationFile=file:{log4j_config()}"
    if extra := os.environ.get(JAVA_OPTIONS_VAR, "").strip():
        java_opts = f"{java_opts} {extra}"
    launch: dict[str, str] = {}
    if master is not None:
        launch = {
            "spark.master": master,
            "spark.driver.memory": os.environ.get("FEATURELINE_SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY),
            # Loopback unless told otherwise: executors of a remote cluster must reach the driver.
            "spark.driver.host": os.environ.get("FEATURELINE_SPARK_DRIVER_HOST", "127.0.0.1"),
            "spark.driver.bindAddress": os.environ.get("FEATURELINE_SPARK_DRIVER_HOST", "127.0.0.1"),
            # Executors run the driver's Python (the venv, where featureline is installed).
            "spark.pyspark.python": os.environ.get("PYSPARK_PYTHON", sys.executable),
            "spark.driver.extraJavaOptions": java_opts,
        }
    return {
        **launch,
        "spark.sql.shuffle.partitions": str(SHUFFLE_PARTITIONS),
        "spark.default.parallelism": str(SHUFFLE_PARTITIONS),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.execution.arrow.pyspark.fallback.enabled": "false",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.adaptive.enabled": "true",
        # Parquet timestamps written by pyarrow are instants (isAdjustedToUTC=true); read
        # and write them as such.
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        # Netty reflection for Arrow's off-heap buffers on Java 17; quiet logs.
        "spark.executor.extraJavaOptions": java_opts,
    }


def get_spark(
    master: str | None = None,
    app_name: str = DEFAULT_APP_NAME,
    conf: dict[str, str] | None = None,
) -> SparkSession:
    """The process's Spark session, started on first use.

    `master` defaults to $FEATURELINE_SPARK_MASTER, else spark-submit's master when run
    by spark-submit, else local[2]. Asking for a different master than the running
    session's stops it and starts a new one (a test against a standalone cluster, then
    back to local). `conf` adds or overrides settings of a
    newly started session (JVM settings such as driver memory only apply then).
    """
    global _session, _session_master
    wanted = master or os.environ.get("FEATURELINE_SPARK_MASTER")
    if wanted is None and not under_spark_submit():
        wanted = DEFAULT_MASTER
    with _lock:
        if _session is not None and _session_master == wanted and is_alive(_session):
            return _session
        if _session is not None:
            _session.stop()
            _session = None
        _session = _start(wanted, app_name, conf or {})
        _session_master = wanted
        return _session


def stop_spark() -> None:
    global _session, _session_master
    with _lock:
        if _session is not None:
            _session.stop()
        _session = None
        _session_master = None


def _start(master: str | None, app_name: str, conf: dict[str, str]) -> SparkSession:
    # The workers must run the same Python as the driver (the venv's).
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", os.environ.get("FEATURELINE_SPARK_DRIVER_HOST", "127.0.0.1"))
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    for key, value in {**base_conf(master), **conf}.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # JVM start failures surface as many exception types
        raise ServiceUnavailableError(f"could not start Spark (master {master}): {exc}") from exc
    session.sparkContext.setLogLevel("WARN")
    return session
