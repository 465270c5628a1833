"""Monitoring as shipped: the alert rules pass `promtool` (syntax and their unit tests in
deploy/monitoring/alerts_test.yml), the Prometheus config is valid, and every metric that
the rules and the Grafana dashboard query is one that `featureline serve` and the stream
job really export (scraped from a running server; the stream job's registry after it
recorded a batch; `featureline drift`'s exposition of a report). Views' `freshness_slo`
tags reach /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import redis
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from serve_process import ServerProcess
from serving_data import now_us, write_latest

from featureline.errors import BadInputError
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings
from featureline.slo import freshness_slos, parse_duration_s
from featureline.specs import RepoSpec
from featureline.ui.operations import marks_exposition

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
_METRIC = re.compile(r"\b(featureline_[a-z_]+)\b")


def _promtool() -> str:
    exe = shutil.which("promtool")
    assert exe, "promtool is not installed: run `make install` (it installs Debian's prometheus package)"
    return exe


def _run(*argv: str, cwd: Path) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_alert_rules_are_valid_and_their_unit_tests_pass() -> None:
    out = _run(_promtool(), "check", "rules", "alerts.yml", cwd=MONITORING)
    assert "SUCCESS: 10 rules found" in out
    out = _run(_promtool(), "test", "rules", "alerts_test.yml", cwd=MONITORING)
    assert "SUCCESS" in out


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    # The config names the rules where the compose override mounts them; here, beside it.
    text = (MONITORING / "prometheus.yml").read_text()
    assert "/etc/prometheus/alerts.yml" in text
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/alerts.yml", "alerts.yml"))
    _run(_promtool(), "check", "config", "prometheus.yml", cwd=tmp_path)


def _queried_metrics() -> dict[str, set[str]]:
    """Metric names in the rules' and the dashboard's expressions, by file."""
    import yaml

    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs = [r["expr"] for group in rules["groups"] for r in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return {
        "alerts.yml": {m for e in exprs for m in _METRIC.findall(e)},
        "grafana-dashboard.json": {m for q in queries for m in _METRIC.findall(q)},
    }


def _sample_names(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def _served_metrics(server: ServerProcess, settings: Settings, spec: RepoSpec) -> str:
    client = redis.Redis.from_url(settings.redis_url)
    row = {"user_id": 777, "age": 40, "country": "FR", "limit_eur": 1.0, "score": 1.0, "level": 1,
           "vip": False, "event_us": now_us()}  # fmt: skip
    write_latest(client, spec, "profile", [row])
    client.close()
    body = {"features": ["profile:age"], "entities": {"user_id": [777]}}
    assert httpx.post(f"{server.url}/get-online-features", json=body, timeout=5).status_code == 200
    request = pb.GetOnlineFeaturesRequest(
        features=pb.FeatureList(val=["profile:age"]),
        entities={"user_id": pb.RepeatedValue(val=[pb.Value(int64_val=777)])},
    )
    with grpc.insecure_channel(server.target) as channel:
        channel.unary_unary(f"/{SERVICE_NAME}/GetOnlineFeatures")(request.SerializeToString(), timeout=5)
    return httpx.get(f"{server.url}/metrics", timeout=5).text


def _stream_metrics() -> str:
    from featureline.streaming.metrics import REGISTRY, Totals

    # A topic of its own: the registry is the process's, which other tests' exporters
    # (the web UI's operations test) read for topic "txns".
    topic = "monitoring_check"
    totals = Totals()
    totals.record(topic, 3, 0, np.array([1_000, 2_000, 3_000]), 4_000, {"monitoring_check_view": 1})
    totals.dead_letters(topic, 1)
    totals.set_lag(topic, 0, 5)
    totals.retried(1)
    return generate_latest(REGISTRY).decode()


def _drift_metrics() -> str:
    """`featureline drift`'s metrics, as its .prom textfile and the UI's /metrics carry
    them (featureline.stats.report.exposition): a report on one feature."""
    import pyarrow as pa

    from featureline.stats.column import ColumnStats
    from featureline.stats.drift import Thresholds, compare
    from featureline.stats.report import DriftReport, exposition

    ref = ColumnStats.of(pa.array([1.0, 2.0, 3.0, 4.0]))
    drift = compare("profile", "age", ref, ref, Thresholds())
    return exposition([DriftReport("fraud_training_v1", {}, {}, Thresholds(), [drift])])


def test_every_queried_metric_is_exported(
    server: ServerProcess, serving_settings: Settings, serving_spec: RepoSpec
) -> None:
    exported = _sample_names(_served_metrics(server, serving_settings, serving_spec))
    exported |= _sample_names(_stream_metrics())
    exported |= _sample_names(_drift_metrics())
    exported |= _sample_names(marks_exposition({"profile": 1_765_000_000_000_000}))  # the UI's /metrics
    assert "featureline_serving_redis_errors_total" in exported  # the scrape parsed
    for name, metrics in _queried_metrics().items():
        assert metrics, f"{name} queries no featureline metric"
        missing = sorted(metrics - exported)
        assert not missing, f"{name} queries metrics nobody exports: {missing}"


def test_views_freshness_slos_reach_metrics(server: ServerProcess) -> None:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    slos = {
        (s.labels["view"], s.labels["topic"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "featureline_view_freshness_slo_seconds"
    }
    # tests/serving/serving_data.py: profile (batch) "2d", txn_stats (topic txns) "1m".
    assert slos == {("profile", ""): 172800.0, ("txn_stats", "txns"): 60.0}


def test_the_dashboard_is_grafana_json() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1.5h", 5400.0), ("2d", 172800.0)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1m", "0", "1w", "m"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(BadInputError):
        parse_duration_s(text)


def test_a_bad_tag_names_its_view(serving_spec: RepoSpec) -> None:
    import dataclasses

    profile = dataclasses.replace(serving_spec.views["profile"], tags={"freshness_slo": "soon"})
    repo = dataclasses.replace(serving_spec, views={**serving_spec.views, "profile": profile})
    with pytest.raises(BadInputError, match="feature view 'profile': tag freshness_slo: not a duration"):
        freshness_slos(repo)
