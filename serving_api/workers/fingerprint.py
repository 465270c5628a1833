"""The definition fingerprint of a FeatureService: what ties a model to its features.

It hashes (with `featureline.specs.definition_fingerprint`) everything that decides
the values a model sees: the service's resolved features in their order (view, alias,
feature, dtype), and the full spec of every view and on-demand view they come from
(join keys, ttl, timestamp fields, aggregations with their windows and tile sizes,
udf source, source schemas). Where the data lives is left out: a file path or a Kafka
bootstrap address changes between a laptop and a cluster (the demo's sources read
FEATURELINE_OFFLINE_DIR), and the same definitions must keep the same fingerprint
there. Tags and descriptions are documentation and are left out too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from featureline.specs import (
    FileSourceSpec,
    KafkaSourceSpec,
    OnDemandViewSpec,
    RepoSpec,
    ResolvedFeature,
    ViewSpec,
    definition_fingerprint,
    resolve_features,
)


@dataclass(frozen=True)
class ServiceDefinition:
    """The fingerprinted part of a feature service, in a stable order."""

    service: str
    features: tuple[ResolvedFeature, ...]
    views: tuple[ViewSpec, ...]
    on_demand_views: tuple[OnDemandViewSpec, ...]


def _file_source(source: FileSourceSpec | None) -> FileSourceSpec | None:
    return None if source is None else dataclasses.replace(source, path="")


def _kafka_source(source: KafkaSourceSpec | None) -> KafkaSourceSpec | None:
    if source is None:
        return None
    return dataclasses.replace(source, bootstrap_servers="", batch_source=_file_source(source.batch_source))


def _definition_only(view: ViewSpec) -> ViewSpec:
    return dataclasses.replace(
        view,
        batch_source=_file_source(view.batch_source),
        stream_source=_kafka_source(view.stream_source),
        tags={},
    )


def service_definition(repo: RepoSpec, service: str) -> ServiceDefinition:
    """The definition of `service` (NotFoundError for an unknown service)."""
    features = tuple(resolve_features(repo, service=service, full_feature_names=True))
    view_names: list[str] = []
    odfv_names: list[str] = []
    pending = [(f.view, f.on_demand) for f in features]
    while pending:  # an on-demand view's sources are part of its definition
        name, on_demand = pending.pop(0)
        if not on_demand:
            view_names.append(name)
        elif name not in odfv_names:
            odfv_names.append(name)
            sources = repo.on_demand_views[name].sources
            pending += [(src, src in repo.on_demand_views) for src, _ in sources]
    views = tuple(_definition_only(repo.views[name]) for name in dict.fromkeys(view_names))
    odfvs = tuple(repo.on_demand_views[name] for name in odfv_names)
    return ServiceDefinition(service, features, views, odfvs)


def service_fingerprint(repo: RepoSpec, service: str) -> str:
    """16 hex digits; equal for equal definitions, different when any part changes."""
    return definition_fingerprint(service_definition(repo, service))


def meta_sidecar(model: Path) -> Path:
    """Where save_model writes a copy of a model's meta as JSON (`<model>.json`): what
    tools that do not import torch (the web UI, featureline.ui) read, service and
    fingerprint included. Here, not in model.py, because model.py imports torch."""
    return model.with_name(model.name + ".json")
