"""The web UI's pure logic with plain values: histogram quantiles and rates as PromQL
computes them, search, the lineage layout, lookup values, and consistency reports read
from what `featureline consistency` writes."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from big_repo import big_spec

from featureline.errors import BadInputError
from featureline.specs import DocSpec, doc_key
from featureline.ui import lineage, metrics, reports
from featureline.ui.catalog import build_catalog, parse_query, search
from featureline.ui.lookup import LookupField, lookup_fields, parse_value

# Cumulative buckets of the observations 0.2, 0.2, 0.2 and 4.0.
BUCKETS = [(0.1, 0.0), (0.25, 3.0), (2.5, 3.0), (5.0, 4.0), (math.inf, 4.0)]


def test_quantiles_interpolate_inside_the_bucket_as_histogram_quantile_does() -> None:
    # p50: rank 2 of 4 in (0.1, 0.25] holding 3: 0.1 + 0.15 * 2/3.
    assert metrics.quantile(0.5, BUCKETS) == pytest.approx(0.2)
    # p99: rank 3.96 in (2.5, 5] holding 1: 2.5 + 2.5 * 0.96.
    assert metrics.quantile(0.99, BUCKETS) == pytest.approx(4.9)
    # A rank in the +Inf bucket answers the highest finite bound.
    assert metrics.quantile(0.99, [(1.0, 1.0), (math.inf, 10.0)]) == 1.0
    assert metrics.quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None
    assert metrics.quantile(0.5, []) is None


def test_parse_and_delta_read_counters_and_histograms_and_survive_a_reset() -> None:
    text = (
        "# TYPE featureline_serving_requests counter\n"
        'featureline_serving_requests_total{endpoint="/get-online-features",code="200"} 10\n'
        'featureline_serving_requests_total{endpoint="/get-online-features",code="400"} 2\n'
        "# TYPE lat histogram\n"
        'lat_bucket{endpoint="a",le="0.1"} 1\nlat_bucket{endpoint="a",le="+Inf"} 3\n'
        'lat_count{endpoint="a"} 3\nlat_sum{endpoint="a"} 1.5\n'
    )
    before = metrics.parse(text)
    assert metrics.total(before, "featureline_serving_requests_total", by="code") == {"200": 10.0, "400": 2.0}
    assert metrics.buckets(before, "lat", by="endpoint") == {"a": [(0.1, 1.0), (math.inf, 3.0)]}
    after = metrics.parse(text.replace("} 10\n", "} 25\n").replace("} 2\n", "} 1\n"))
    change = metrics.delta(after, before)
    # 15 more OK answers; the 400 counter went down (a restarted worker): counted from 0.
    assert metrics.total(change, "featureline_serving_requests_total", by="code") == {"200": 15.0, "400": 1.0}
    assert metrics.merge([before, before])[("lat_count", (("endpoint", "a"),))] == 6.0


def test_search_matches_tags_text_and_every_word() -> None:
    spec = big_spec()
    spec.docs[doc_key("field", "view_002:f_002_3")] = DocSpec("Refund count", tags={"pii": "no"})
    catalog = build_catalog(spec)
    assert parse_query("tag:Team=team_3 refund")[0].tag_key == "team"

    def names(query: str, kind: str = "feature") -> set[str]:
        return {r.name for r in search(catalog, query) if r.kind == kind}

    team3 = {n for n, v in spec.views.items() if v.tags["team"] == "team_3"}
    assert names("tag:team=team_3", "view") == team3
    # A feature carries its view's tags; its own tags and description count too.
    assert names("tag:team=team_3") == {f"{v}:{f}" for v in team3 for f in spec.views[v].feature_names}
    assert names("tag:pii") == names("REFUND") == {"view_002:f_002_3"}
    assert names("tag:pii=yes") == set()
    # Every word must match: a team and a type.
    assert all(spec.views[r.split(":")[0]].tags["team"] == "team_3" for r in names("team_3 int64"))
    assert names("team_3 int64") < names("tag:team=team_3")
    assert search(catalog, "   ") == []


def _crossings(g: lineage.Graph) -> int:
    segments = [(g.nodes[a].y, g.nodes[b].y, g.nodes[a].x) for a, b in g.edges]
    return sum(
        1
        for i, (a1, b1, x1) in enumerate(segments)
        for a2, b2, x2 in segments[i + 1 :]
        if x1 == x2 and (a1 - a2) * (b1 - b2) < 0
    )


def test_the_lineage_layout_orders_columns_to_cut_crossings_and_never_overlaps() -> None:
    spec = big_spec()
    catalog = build_catalog(spec)
    models = [lineage.ModelNode("m1", "service_3", "abc", True), lineage.ModelNode("m2", "gone", "def", None)]
    g = lineage.build_graph(catalog, models)
    kinds = {n.column for n in g.nodes.values()}
    assert kinds == {"source", "view", "on_demand_view", "service", "model"}
    assert ("service:service_3", "model:m1") in g.edges and "model:m2" in g.nodes
    boxes = sorted((n.x, n.y) for n in g.nodes.values())
    for (x1, y1), (x2, y2) in zip(boxes, boxes[1:], strict=False):
        assert x1 != x2 or y2 - y1 >= lineage.NODE_H  # one column: stacked, never overlapping
    # The barycenter sweeps cut crossings well below the alphabetical order's.
    plain = lineage.Graph({k: dataclasses.replace(n) for k, n in g.nodes.items()}, list(g.edges))
    for n in plain.nodes.values():
        n.y = sorted(m.label for m in plain.nodes.values() if m.column == n.column).index(n.label) * 1.0
    lineage.layout(g)
    assert _crossings(g) < _crossings(plain) / 2
    svg = lineage.render_svg(g)
    assert svg.count('class="node"') == len(g.nodes) and svg.count('class="edge"') == len(g.edges)
    sub = lineage.neighbourhood(g, "view:view_001")
    assert set(sub.nodes) == {"view:view_001", "source:kafka_topic_1", "service:service_0"}


def test_lookup_asks_for_join_keys_and_request_fields_and_types_the_values() -> None:
    spec = big_spec()
    fields = lookup_fields(spec, "odfv_1")
    assert [(f.name, f.kind) for f in fields] == [("entity_2_id", "join key"), ("amount", "request field")]
    assert parse_value(" 42 ", fields[0]) == 42
    assert parse_value("2.5", fields[1]) == 2.5
    assert parse_value("TRUE", LookupField("vip", "bool", "request field")) is True
    with pytest.raises(BadInputError, match="entity_2_id: 'x' is not a int64"):
        parse_value("x", fields[0])


def test_consistency_reports_are_listed_newest_first_and_charted(tmp_path: Path) -> None:
    from featureline.cli.consistency import FeatureAgreement, write_report
    from featureline.cli.consistency.run import ConsistencyReport

    good = ConsistencyReport(1_700_000_000_000_000, 10, [FeatureAgreement("v:a", compared=10, matches=10)])
    bad = ConsistencyReport(
        1_700_000_100_000_000, 10, [FeatureAgreement("v:a", compared=10, matches=9, extra=1)]
    )
    for report in (good, bad):
        write_report(report, tmp_path)
    listed = reports.list_reports(tmp_path)
    assert [(r.ok, r.worst) for r in listed] == [(False, 0.1), (True, 0.0)]
    assert listed[0].has_html and reports.find(tmp_path, listed[1].name) == listed[1]
    assert reports.find(tmp_path, "../../etc/passwd") is None
    chart = reports.features_svg(listed[0])
    assert chart.count("<rect") == 1 + len(reports.COLOURS) and "10.00%" in chart
    assert reports.trend_svg(listed).count("<rect") == 2


def test_models_are_read_from_their_meta_sidecar_and_a_bad_file_is_a_message(tmp_path: Path) -> None:
    import json

    from featureline.serving_api.workers.fingerprint import meta_sidecar, service_fingerprint
    from featureline.ui.models import list_models

    spec = big_spec()
    current = service_fingerprint(spec, "service_1")
    (tmp_path / "a.pt").write_bytes(b"weights: never read while the sidecar is as new")
    meta = {"service": "service_1", "fingerprint": current, "training": {"validation_auc": 0.75}}
    meta_sidecar(tmp_path / "a.pt").write_text(json.dumps(meta))
    (tmp_path / "b.pt").write_bytes(b"not a model")  # no sidecar: read with torch, which refuses it
    (tmp_path / "c.pt").write_bytes(b"x")
    meta_sidecar(tmp_path / "c.pt").write_text(json.dumps({**meta, "service": "gone", "fingerprint": "f"}))
    a, b, c = list_models(tmp_path, spec)
    assert (a.service, a.validation_auc, a.current) == ("service_1", 0.75, True)
    assert b.error and "not a Featureline model file" in b.error
    assert c.current is None and not c.error
