"""`featureline ui` in a real headless Chromium: the demo repo's catalog, search by tag,
the lineage graph (screenshot saved and checked non-blank), models, an entity lookup
against a running `featureline serve`, the operations page from real exporters, error
pages, and page times for a repo of 1,000 features.

Two UIs run: one of the demo repo (feature_repo/, parsed by the child: ~5 s), one of
the serving tests' repo next to `featureline serve` on the session Redis.
"""

from __future__ import annotations

import dataclasses
import html
import io
import json
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from big_repo import write_big_repo
from prometheus_client.parser import text_string_to_metric_families
from serve_process import ServerProcess, start_server
from serving_data import SERVING_REPO_FILES, now_us, write_latest
from ui_process import UiProcess, start_ui

from featureline.repo import load_repo
from featureline.settings import Settings
from featureline.specs import RepoSpec

ROOT = Path(__file__).resolve().parents[2]
# Issue 16's bound per page for a repo of 1,000 features, measured on a quiet machine
# (figures in BENCHMARKS.md). Asserted on the median of 5 loads with 3x headroom: the
# CI machine shares its cores with other jobs.
PAGE_BOUND_S = 0.300
HEADROOM = 3.0


@pytest.fixture(scope="module")
def demo(stack: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UiProcess, RepoSpec]]:
    """The UI of the demo repo, with two models in its home: one trained on the current
    definitions of fraud_training_v1, one on other definitions."""
    home = tmp_path_factory.mktemp("ui-demo-home")
    settings = dataclasses.replace(stack, repo=ROOT / "feature_repo", home=home)
    # Parsed here (Feast's import, shared with the serving fixture), cached in home/specs
    # for the child: `featureline serve` and `ui` start from the cache.
    repo = load_repo(settings)
    _write_models(home / "models", repo)
    ui = start_ui(settings)
    try:
        yield ui, repo
    finally:
        ui.stop()


def _write_models(folder: Path, repo: RepoSpec) -> None:
    """Two real model files through save_model (weights + its JSON meta sidecar)."""
    from featureline.serving_api.workers.fingerprint import meta_sidecar, service_fingerprint
    from featureline.serving_api.workers.model import FraudMLP, ModelMeta, Normalization, save_model

    norm = Normalization((0.0, 0.0), (0.0, 0.0), (1.0, 1.0), (False, True))
    current = service_fingerprint(repo, "fraud_training_v1")
    for name, fingerprint, auc in (("fraud_current", current, 0.91), ("fraud_old", "0123456789abcdef", 0.88)):
        meta = ModelMeta(
            "fraud_training_v1",
            fingerprint,
            ("a", "b"),
            norm,
            (4,),
            {"validation_auc": auc, "train_rows": 1000},
        )
        save_model(folder / f"{name}.pt", FraudMLP(norm, (4,)), meta)
        # The meta beside it, which the UI reads without torch.
        assert json.loads(meta_sidecar(folder / f"{name}.pt").read_text())["fingerprint"] == fingerprint


def _texts(browser: Any, css: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, css)]


def test_the_catalog_lists_every_entity_source_view_feature_and_service_of_the_demo_repo(
    demo: tuple[UiProcess, RepoSpec], browser: Any
) -> None:
    ui, repo = demo
    browser.get(ui.url + "/")
    assert "Catalog of featureline_demo" in browser.page_source
    views = {t.split()[0] for t in _texts(browser, "tr.view")}
    assert views == set(repo.views) | set(repo.on_demand_views)
    features = {(t.split()[1], t.split()[0]) for t in _texts(browser, "tr.feature")}
    expected = {(v, f.name) for v, spec in repo.views.items() for f in spec.features}
    expected |= {(v, f.name) for v, spec in repo.on_demand_views.items() for f in spec.features}
    assert features == expected
    assert {t.split()[0] for t in _texts(browser, "tr.service")} == set(repo.services)
    assert {t.split()[0] for t in _texts(browser, "tr.entity")} == set(repo.entities)
    sources = " ".join(_texts(browser, "tr.source"))
    assert "transactions kafka transactions" in sources  # the Kafka source and its topic
    assert "user_profile_source file" in sources
    # Descriptions, tags and the freshness SLO from the definitions.
    row = next(t for t in _texts(browser, "tr.view") if t.startswith("user_txn_stats"))
    assert "Per-user spend over sliding 10 min" in row and "freshness_slo=1m" in row and "1.0 min" in row


def test_search_finds_features_by_a_tag_and_by_text(demo: tuple[UiProcess, RepoSpec], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.wait import WebDriverWait

    ui, repo = demo
    browser.get(ui.url + "/")
    box = browser.find_element(By.CSS_SELECTOR, "header input[type=search]")
    box.send_keys("tag:freshness_slo=2d", Keys.ENTER)
    WebDriverWait(browser, 10).until(lambda b: b.find_elements(By.ID, "search-results"))
    found = _texts(browser, "#search-results tr.result[data-kind=feature]")
    names = {t.split()[1] for t in found}
    slow_views = {n for n, v in repo.views.items() if v.tags.get("freshness_slo") == "2d"}
    assert names == {f"{v}:{f}" for v in slow_views for f in repo.views[v].feature_names}
    assert "user_profile:credit_limit" in names and not any(n.startswith("user_txn_stats:") for n in names)
    # Plain text matches descriptions too: "chargeback" is only in merchant_risk's.
    browser.get(ui.url + "/?q=chargeback")
    assert {t.split()[1] for t in _texts(browser, "#search-results tr.result")} == {"merchant_risk"} | {
        f"merchant_risk:{f}" for f in repo.views["merchant_risk"].feature_names
    }


def _colours(png: bytes) -> int:
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    return len(image.getcolors(maxcolors=1 << 20) or [])


def test_the_lineage_graph_renders_with_its_models(
    demo: tuple[UiProcess, RepoSpec], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    ui, repo = demo
    browser.get(ui.url + "/lineage")
    svg = browser.find_element(By.CSS_SELECTOR, "#lineage svg")
    nodes = {e.get_attribute("data-id") for e in svg.find_elements(By.CSS_SELECTOR, "g.node")}
    assert {f"view:{v}" for v in repo.views} <= nodes
    assert {f"service:{s}" for s in repo.services} <= nodes
    assert {"source:transactions", "model:fraud_current", "model:fraud_old"} <= nodes
    assert len(svg.find_elements(By.CSS_SELECTOR, "path.edge")) >= len(repo.views) + 2
    shot = tmp_path / "lineage.png"
    png = svg.screenshot_as_png
    shot.write_bytes(png)
    # Non-blank: node fills of every kind, text and edges (a blank box has 1 or 2).
    assert _colours(png) >= 8, f"lineage screenshot {shot} looks blank"
    size = svg.size
    assert size["width"] > 600 and size["height"] > 200
    # The models page: the current model matches, the other one does not.
    browser.get(ui.url + "/models")
    rows = {t.split()[0]: t for t in _texts(browser, "#models tr.model")}
    assert "match" in rows["fraud_current"] and "0.910" in rows["fraud_current"]
    assert "changed" in rows["fraud_old"] and "0123456789abcdef" in rows["fraud_old"]


def test_unknown_pages_are_404_pages_with_a_message(demo: tuple[UiProcess, RepoSpec]) -> None:
    ui, _ = demo
    for path, words in (
        ("/features/user_txn_stats/nope", "has no feature 'nope'"),
        ("/views/nope", "unknown feature view 'nope'"),
        ("/services/nope", "unknown feature service 'nope'"),
        ("/reports/consistency-20990101T000000Z", "no consistency report"),
        ("/lineage?focus=view:nope", "no node"),
    ):
        reply = httpx.get(ui.url + path, timeout=10)
        assert reply.status_code == 404, path
        assert words in html.unescape(reply.text) and "Traceback" not in reply.text
    bad = httpx.get(ui.url + "/features/user_txn_stats/sum_amount_1h?user_id=abc", timeout=10)
    assert bad.status_code == 400 and "user_id: 'abc' is not a int64" in html.unescape(bad.text)


@pytest.fixture(scope="module")
def served(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, UiProcess]]:
    """`featureline serve` on the serving tests' repo (tests/serving/serving_data.py) with
    one user's profile in the session Redis, the stream job's own metrics exporter
    (featureline.streaming.metrics, in this process), and the UI of that repo pointed at
    both."""
    import redis
    from prometheus_client import start_http_server

    from featureline.cli.devstack import free_ports
    from featureline.streaming import metrics

    home = tmp_path_factory.mktemp("ui-serving-home")
    (home / "repo").mkdir()
    for name, text in SERVING_REPO_FILES.items():
        (home / "repo" / name).write_text(text)
    settings = dataclasses.replace(stack, repo=home / "repo", home=home)
    (stream_port,) = free_ports(1)
    exporter, _ = start_http_server(stream_port, "127.0.0.1", registry=metrics.REGISTRY)
    metrics.LAG.labels("txns", "0").set(42)
    metrics.DEAD.labels("txns").inc(3)
    for seconds in (0.2, 0.2, 0.2, 4.0):
        metrics.FRESHNESS.labels("txns").observe(seconds)
    server = ui = None
    try:
        spec = load_repo(settings)  # cached in home/specs for serve and the UI
        server = start_server(settings)
        client = redis.Redis.from_url(stack.redis_url)
        profile = {"user_id": 1001, "event_us": now_us() - 60_000_000, "age": 41, "country": "NL",
                   "limit_eur": 2500.0, "score": 0.5, "level": 3, "vip": True}  # fmt: skip
        write_latest(client, spec, "profile", [profile])
        client.close()
        ui = start_ui(settings, "--serving-url", server.url,
                      "--stream-metrics-url", f"http://127.0.0.1:{stream_port}/metrics")  # fmt: skip
        yield server, ui
    finally:
        for process in (ui, server):
            if process is not None:
                process.stop()
        exporter.shutdown()


def test_an_entity_lookup_shows_the_value_get_online_features_returns(
    served: tuple[ServerProcess, UiProcess], browser: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    server, ui = served
    browser.get(ui.url + "/features/profile/limit_eur")
    browser.find_element(By.ID, "f-user_id").send_keys("1001")
    browser.find_element(By.CSS_SELECTOR, "#lookup button[type=submit]").click()
    WebDriverWait(browser, 10).until(
        lambda b: b.find_elements(By.CSS_SELECTOR, "#lookup-value, #lookup-error")
    )
    value = browser.find_element(By.ID, "lookup-value").text
    status = browser.find_element(By.ID, "lookup-status").text
    direct = httpx.post(
        server.url + "/get-online-features",
        timeout=10,
        json={"features": ["profile:limit_eur"], "entities": {"user_id": [1001]}},
    ).json()
    column = direct["results"][direct["metadata"]["feature_names"].index("limit_eur")]
    assert (float(value), status) == (column["values"][0], column["statuses"][0]) == (2500.0, "PRESENT")
    # An entity with no row: serve's status, shown as it is.
    browser.get(ui.url + "/features/profile/limit_eur?user_id=999999")
    assert browser.find_element(By.ID, "lookup-status").text == "NOT_FOUND"
    # Freshness: the view's SLO, and the age of the values serve just returned.
    freshness = browser.find_element(By.ID, "freshness").text
    assert "freshness SLO 2.0 d" in freshness and "age of served values p50" in freshness


def test_operations_show_stream_and_serving_figures_from_their_exporters(
    served: tuple[ServerProcess, UiProcess], browser: Any
) -> None:

    server, ui = served
    httpx.get(ui.url + "/operations", timeout=10)  # the first scrape: a rate needs two
    for _ in range(5):
        httpx.post(
            server.url + "/get-online-features",
            timeout=10,
            json={"features": ["profile:age"], "entities": {"user_id": [1001]}},
        )
    time.sleep(1.1)  # a rate is taken over at least 1 s since the previous scrape
    browser.get(ui.url + "/operations")
    stream = {t.split()[0]: t for t in _texts(browser, "#stream-table tr")[1:]}
    cells = stream["txn_stats"].split()
    # lag 42 and 3 dead letters on topic txns; p50 inside the (0.1, 0.25] bucket.
    assert cells[1:4] == ["txns", "42", "200"] and "3" in cells, stream["txn_stats"]
    serving = {t.split()[0]: t.split() for t in _texts(browser, "#serving-table tr")[1:]}
    row = next(v for k, v in serving.items() if "get-online-features" in k or "get_online_features" in k)
    assert float(row[1].replace(",", "")) >= 5  # requests in all
    assert row[2] != "-"  # a rate: two scrapes
    batch = {t.split()[0]: t for t in _texts(browser, "#batch-table tr")[1:]}
    assert set(batch) == {"pair", "profile"}
    assert "not recorded" in batch["profile"]


def test_metrics_carry_materialize_marks_for_the_batch_freshness_alert(
    served: tuple[ServerProcess, UiProcess], stack: Settings
) -> None:
    """/metrics: featureline_materialize_mark_timestamp_seconds{view} from the mark
    materialize keeps in the online store (the FeaturelineBatchFreshnessSLOBreach input);
    a view never materialized has no sample."""
    import redis
    import yaml

    from featureline.batch.materialize.job import mark_key

    _, ui = served
    project = yaml.safe_load(SERVING_REPO_FILES["feature_store.yaml"])["project"]
    mark_us = 1_765_000_000_123_456
    client = redis.Redis.from_url(stack.redis_url)
    client.set(mark_key(project, "pair"), mark_us)
    client.close()
    text = httpx.get(ui.url + "/metrics", timeout=10).text
    marks = {
        s.labels["view"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "featureline_materialize_mark_timestamp_seconds"
    }
    assert marks == {"pair": mark_us / 1e6}


def test_pages_of_a_repo_of_1000_features_load_under_the_bound(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory, browser: Any
) -> None:
    home = tmp_path_factory.mktemp("ui-big-home")
    specs, spec = write_big_repo(home / "repo")
    settings = dataclasses.replace(stack, repo=home / "repo", home=home)
    ui = start_ui(settings, env_extra={"FEATURELINE_SPECS_FILE": str(specs)})
    pages = [
        "/",
        "/?q=tag:team=team_3",
        "/lineage",
        "/views/view_001",
        "/features/view_002/f_002_3",
        "/services/service_7",
        "/operations",
        "/models",
    ]
    try:
        with httpx.Client(timeout=30) as client:
            times = {}
            for page in pages:
                assert client.get(ui.url + page).status_code == 200, page  # warm: templates compiled
                samples = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    reply = client.get(ui.url + page)
                    samples.append(time.perf_counter() - t0)
                    assert reply.status_code == 200
                times[page] = statistics.median(samples)
        print("page medians (ms):", {p: round(t * 1000, 1) for p, t in times.items()})
        slow = {p: t for p, t in times.items() if t > PAGE_BOUND_S * HEADROOM}
        assert not slow, f"pages over {PAGE_BOUND_S * HEADROOM:.2f} s: {slow}"
        # And the home page of 1,000 features renders in the browser.
        from selenium.webdriver.common.by import By

        browser.get(ui.url + "/")
        assert len(browser.find_elements(By.CSS_SELECTOR, "tr.feature")) == sum(
            len(v.features) for v in [*spec.views.values(), *spec.on_demand_views.values()]
        )
    finally:
        ui.stop()
