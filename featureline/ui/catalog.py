"""The catalog of a repo as the UI shows it: flat rows of entities, sources, views,
features, on-demand views and services, built once per RepoSpec (pure, no I/O), and
the search over them.

Search (`?q=`): words separated by spaces, every one must match (AND):
    tag:key=value   an object with that tag (a feature: its own field tags or its view's)
    tag:key         an object with a tag of that key
    text            a substring (case-insensitive) of the name, the description, the
                    owner, a tag value, a feature's type or its view's name
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from featureline.errors import BadInputError
from featureline.slo import TAG as SLO_TAG
from featureline.slo import parse_duration_s
from featureline.specs import DocSpec, RepoSpec, ViewSpec


@dataclass(frozen=True)
class Row:
    """One catalog object: what every list and the search read."""

    kind: str  # entity, source, view, on_demand_view, feature, service
    name: str  # a feature's is "view:feature"
    description: str = ""
    owner: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    # Searched as text too: a feature's type and view, a source's topic or path.
    extra: tuple[str, ...] = ()

    # Computed once per row (a catalog lives until the definitions change): a search of
    # 1,000 features then costs a substring test per row and word.
    @cached_property
    def haystack(self) -> str:
        parts = [self.name, self.description, self.owner, *self.tags.values(), *self.extra]
        return "\n".join(parts).lower()

    @cached_property
    def lower_tags(self) -> dict[str, str]:
        return {k.lower(): v.lower() for k, v in self.tags.items()}


@dataclass(frozen=True)
class SourceRow:
    name: str
    kind: str  # kafka, file, push
    where: str  # the Kafka topic, the file path, or the push source's name
    views: tuple[str, ...]
    description: str = ""


@dataclass(frozen=True)
class FeatureRow:
    view: str
    name: str
    dtype: str
    on_demand: bool
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.view}:{self.name}"


@dataclass(frozen=True)
class Catalog:
    repo: RepoSpec
    sources: tuple[SourceRow, ...]
    features: tuple[FeatureRow, ...]
    rows: tuple[Row, ...]
    # view -> the sources feeding it; service -> its views (on-demand ones included)
    view_sources: dict[str, tuple[str, ...]]
    service_views: dict[str, tuple[str, ...]]

    def feature(self, view: str, name: str) -> FeatureRow | None:
        for row in self.features:
            if row.view == view and row.name == name:
                return row
        return None

    def services_of(self, view: str) -> list[str]:
        return [s for s, views in sorted(self.service_views.items()) if view in views]


def source_of(view: ViewSpec) -> tuple[str, str, str]:
    """(name, kind, where) of what feeds a view: its Kafka source, push source or file."""
    if view.stream_source is not None:
        return view.stream_source.name, "kafka", view.stream_source.topic
    if view.push_source:
        return view.push_source, "push", view.push_source
    if view.batch_source is not None:
        return view.batch_source.name, "file", view.batch_source.path
    return "", "", ""


def freshness_slo_s(view: ViewSpec) -> float | None:
    """The view's freshness SLO in seconds; None without the tag or with a bad value
    (the page shows the raw tag; `featureline serve` refuses a bad one at start)."""
    raw = view.tags.get(SLO_TAG)
    if raw is None:
        return None
    try:
        return parse_duration_s(raw)
    except BadInputError:
        return None


def _sources(repo: RepoSpec) -> tuple[tuple[SourceRow, ...], dict[str, tuple[str, ...]]]:
    feeds: dict[tuple[str, str, str], list[str]] = {}
    view_sources: dict[str, tuple[str, ...]] = {}
    for name, view in sorted(repo.views.items()):
        key = source_of(view)
        if key[0]:
            feeds.setdefault(key, []).append(name)
            view_sources[name] = (key[0],)
    rows = tuple(
        SourceRow(src, kind, where, tuple(views), repo.doc("source", src).description)
        for (src, kind, where), views in sorted(feeds.items())
    )
    return rows, view_sources


def _features(repo: RepoSpec) -> tuple[FeatureRow, ...]:
    out = []
    for name, view in sorted(repo.views.items()):
        for f in view.features:
            doc = repo.doc("field", f"{name}:{f.name}")
            out.append(FeatureRow(name, f.name, f.dtype, False, doc.description))
    for name, odfv in sorted(repo.on_demand_views.items()):
        for f in odfv.features:
            doc = repo.doc("field", f"{name}:{f.name}")
            out.append(FeatureRow(name, f.name, f.dtype, True, doc.description))
    return tuple(out)


def _row(kind: str, name: str, doc: DocSpec, tags: dict[str, str] | None = None, *extra: str) -> Row:
    return Row(kind, name, doc.description, doc.owner, dict(tags if tags is not None else doc.tags), extra)


def _rows(repo: RepoSpec, sources: Iterable[SourceRow], features: Iterable[FeatureRow]) -> tuple[Row, ...]:
    rows = [
        _row("entity", n, repo.doc("entity", n), None, e.join_key) for n, e in sorted(repo.entities.items())
    ]
    rows += [_row("source", s.name, repo.doc("source", s.name), None, s.where) for s in sources]
    rows += [_row("view", n, repo.doc("view", n), v.tags, v.kind) for n, v in sorted(repo.views.items())]
    rows += [_row("on_demand_view", n, repo.doc("on_demand_view", n)) for n in sorted(repo.on_demand_views)]
    rows += [_row("service", n, repo.doc("service", n)) for n in sorted(repo.services)]
    for f in features:
        # A feature carries its view's tags under its own: `tag:freshness_slo=1m` finds
        # the features of every view with that SLO.
        kind = "on_demand_view" if f.on_demand else "view"
        view_doc = repo.doc(kind, f.view)
        view_tags = repo.views[f.view].tags if not f.on_demand else view_doc.tags
        own = repo.doc("field", f.ref)
        rows.append(
            Row(
                "feature",
                f.ref,
                own.description,
                own.owner or view_doc.owner,
                {**view_tags, **own.tags},
                (f.dtype, f.view, view_doc.description),
            )
        )
    return tuple(rows)


def _service_views(repo: RepoSpec) -> dict[str, tuple[str, ...]]:
    return {
        name: tuple(dict.fromkeys(p.view for p in service.projections))
        for name, service in sorted(repo.services.items())
    }


def build_catalog(repo: RepoSpec) -> Catalog:
    sources, view_sources = _sources(repo)
    features = _features(repo)
    return Catalog(
        repo=repo,
        sources=sources,
        features=features,
        rows=_rows(repo, sources, features),
        view_sources=view_sources,
        service_views=_service_views(repo),
    )


@dataclass(frozen=True)
class Term:
    tag_key: str = ""
    tag_value: str | None = None  # None: any value of tag_key
    text: str = ""

    def matches(self, row: Row) -> bool:
        if self.tag_key:
            tags = row.lower_tags
            if self.tag_key not in tags:
                return False
            return self.tag_value is None or tags[self.tag_key] == self.tag_value
        return self.text in row.haystack


def parse_query(query: str) -> list[Term]:
    terms = []
    for word in query.split():
        lower = word.lower()
        if lower.startswith("tag:") and len(lower) > 4:
            key, sep, value = lower[4:].partition("=")
            terms.append(Term(tag_key=key, tag_value=value if sep else None))
        else:
            terms.append(Term(text=lower))
    return terms


def search(catalog: Catalog, query: str) -> list[Row]:
    """The rows matching every word of `query`, in catalog order; [] for a blank one."""
    terms = parse_query(query)
    if not terms:
        return []
    return [row for row in catalog.rows if all(t.matches(row) for t in terms)]
