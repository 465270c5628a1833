"""What `feast apply` registers but Featureline does not act on, each with why.

Nothing in a user's repo may be dropped without a word: `featureline apply` and
`featureline specs` print this list. Imported only by `featureline._feast_convert`
(the Feast objects are read by duck typing, so this module imports no feast).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from featureline.specs import IgnoredSpec

# Batch sources Featureline reads; other offline stores' sources are listed, not read.
READ_SOURCES = {"FileSource", "KafkaSource", "PushSource", "RequestSource"}


def _service_notes(services: Iterable[Any]) -> list[IgnoredSpec]:
    out = []
    for fs in services:
        destination = getattr(getattr(fs, "logging_config", None), "destination", None)
        kind = type(destination).__name__
        if destination is not None and kind != "FileLoggingDestination":
            out.append(IgnoredSpec(
                "feature service logging_config", fs.name,
                f"logging destination {kind} is not supported (FileLoggingDestination only): "
                "served vectors are not logged",
            ))  # fmt: skip
    return out


def _view_notes(views: Iterable[Any]) -> list[IgnoredSpec]:
    out = []
    for view in views:
        if getattr(view, "enable_validation", False):
            out.append(IgnoredSpec(
                "feature view enable_validation", view.name,
                "schema validation at materialization is not run; types are checked on write",
            ))  # fmt: skip
    return out


def _unused_sources(sources: Iterable[Any], used: set[str]) -> list[IgnoredSpec]:
    out = []
    for source in sources:
        kind = type(source).__name__
        if source.name in used:
            continue
        if kind not in READ_SOURCES:
            why = f"{kind} is not an offline store Featureline reads (it reads FileSource and KafkaSource)"
        else:
            why = "no feature view reads it"
        out.append(IgnoredSpec(f"data source ({kind})", source.name, why))
    return out


def _used_source_names(contents: Any) -> set[str]:
    used: set[str] = set()
    views = [*contents.feature_views, *contents.stream_feature_views, *contents.label_views]
    for view in views:
        for attr in ("batch_source", "stream_source", "source"):
            source = getattr(view, attr, None)
            while source is not None:
                used.add(source.name)
                source = getattr(source, "batch_source", None)
    for odfv in contents.on_demand_feature_views:
        used.update(odfv.source_request_sources)
    return used


def unused_objects(contents: Any) -> tuple[IgnoredSpec, ...]:
    """Everything `feast apply` registers that Featureline registers too but does not use."""
    notes = _service_notes(contents.feature_services)
    notes += _view_notes([*contents.feature_views, *contents.stream_feature_views])
    notes += _unused_sources(contents.data_sources, _used_source_names(contents))
    # `featureline serve` enforces a Permission's READ_ONLINE (with auth: oidc in
    # feature_store.yaml); everything else a permission may grant, it does not serve.
    notes += [
        IgnoredSpec(
            "permission", p.name, "grants no READ_ONLINE: `featureline serve` serves online reads only"
        )  # fmt: skip
        for p in getattr(contents, "permissions", [])
        if "read_online" not in {getattr(a, "value", a) for a in p.actions}
    ]
    notes += [
        IgnoredSpec(
            "on-demand view write_to_online_store", o.name, "computed at request time, not stored online"
        )  # fmt: skip
        for o in contents.on_demand_feature_views
        if getattr(o, "write_to_online_store", False)
    ]
    return tuple(notes)
