"""A generated repo of 1,000 features (100 views of 10, half stream views with windowed
aggregations, half batch views), 10 entities, 5 on-demand views and 20 services: the
size issue 16 bounds the UI's page times for. Written as a specs file (what
`featureline specs --json` prints), so no Feast parse is needed to serve it."""

from __future__ import annotations

from pathlib import Path

from featureline.specs import (
    AggregationSpec,
    DocSpec,
    EntitySpec,
    FieldSpec,
    FileSourceSpec,
    KafkaSourceSpec,
    OnDemandViewSpec,
    ProjectionSpec,
    RepoSpec,
    ServiceSpec,
    ViewSpec,
    doc_key,
)

VIEWS = 100
PER_VIEW = 10
ENTITIES = 10
SERVICES = 20


def _view(i: int) -> ViewSpec:
    entity = f"entity_{i % ENTITIES}"
    key = FieldSpec(f"{entity}_id", "int64")
    file = FileSourceSpec(f"file_{i}", f"/data/offline/view_{i:03d}", "event_timestamp")
    tags = {"team": f"team_{i % 7}", "freshness_slo": "1m" if i % 2 else "2d"}
    if i % 2:
        topic = f"topic_{i % 10}"
        stream = KafkaSourceSpec(f"kafka_{topic}", "localhost:9092", topic, "json", "", "event_timestamp")
        aggs = tuple(
            AggregationSpec("amount", "sum", 3600 * (j + 1), 0, f"sum_amount_{j + 1}h_{i}")
            for j in range(PER_VIEW)
        )
        features = tuple(FieldSpec(a.name, "float64") for a in aggs)
        return ViewSpec(
            f"view_{i:03d}",
            "stream",
            (entity,),
            (key,),
            features,
            86400,
            "event_timestamp",
            stream_source=stream,
            batch_source=file,
            aggregations=aggs,
            input_fields=(FieldSpec("amount", "float64"),),
            tags=tags,
        )
    features = tuple(FieldSpec(f"f_{i:03d}_{j}", "int64" if j % 2 else "float64") for j in range(PER_VIEW))
    return ViewSpec(
        f"view_{i:03d}",
        "batch",
        (entity,),
        (key,),
        features,
        0,
        "event_timestamp",
        batch_source=file,
        tags=tags,
    )


def big_spec() -> RepoSpec:
    views = {v.name: v for v in (_view(i) for i in range(VIEWS))}
    entities = {f"entity_{e}": EntitySpec(f"entity_{e}", f"entity_{e}_id", "int64") for e in range(ENTITIES)}
    odfvs = {
        f"odfv_{k}": OnDemandViewSpec(
            f"odfv_{k}",
            "python",
            ((f"view_{k * 2:03d}", (f"f_{k * 2:03d}_0",)),),
            (FieldSpec("amount", "float64"),),
            (FieldSpec(f"ratio_{k}", "float64"),),
            f"udf_{k}",
            "def udf(x): ...",
        )
        for k in range(5)
    }
    services = {
        f"service_{s}": ServiceSpec(
            f"service_{s}",
            tuple(
                ProjectionSpec(name, name, views[name].feature_names)
                for name in (f"view_{(s * 5 + j) % VIEWS:03d}" for j in range(5))
            ),
        )
        for s in range(SERVICES)
    }
    docs = {
        doc_key("view", n): DocSpec(f"Generated view {n} for the UI's page-time test.", "ml-platform")
        for n in views
    }
    return RepoSpec("big", entities, views, odfvs, services, docs=docs)


def write_big_repo(folder: Path) -> tuple[Path, RepoSpec]:
    """A repo folder (feature_store.yaml, for the online store's address) and the specs
    file beside it; returns the specs file's path."""
    spec = big_spec()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feature_store.yaml").write_text(
        "project: big\nprovider: local\nonline_store:\n  type: redis\n"
        "  connection_string: ${FEATURELINE_REDIS_ADDR}\noffline_store:\n  type: file\n"
    )
    specs = folder / "specs.json"
    specs.write_text(spec.to_json())
    return specs, spec
