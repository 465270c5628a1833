"""The model's input layout, read from a FeatureService definition (never hand-kept).

Columns are the service's numeric features in the service's order, under their full
names (`view__feature`, so two views' `amount` never collide): the same columns, in
the same order, as the serving API's tensor call and historical retrieval with full
feature names. Non-numeric features (featureline.dtypes: strings such as
`user_profile__home_country`, arrays, maps) are not model inputs; the serving API
leaves them out of the tensor too and names them.

Missing values are handled as the definitions declare (semantics.md): a windowed
aggregation whose window is empty has a defined value (count, sum and
count_distinct: 0), and that value is the default; every other feature (latest
values, mean/min/max of an empty window, on-demand outputs) has no declared value,
so the model fills it with its training mean and sees a mask bit saying it was
missing.
"""

from __future__ import annotations

from dataclasses import dataclass

from featureline.aggregations import empty_value
from featureline.dtypes import NUMERIC_DTYPES
from featureline.specs import RepoSpec, resolve_features


@dataclass(frozen=True)
class Column:
    name: str  # full feature name, view__feature
    view: str
    feature: str
    dtype: str
    default: float | None  # the definition's value when missing; None: no declared value


@dataclass(frozen=True)
class FeatureLayout:
    service: str
    columns: tuple[Column, ...]
    join_keys: tuple[tuple[str, str], ...]  # (join key, dtype), in first-use order
    request_fields: tuple[tuple[str, str], ...]  # on-demand views' request fields
    omitted: tuple[str, ...]  # non-numeric features, not model inputs

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def entity_fields(self) -> tuple[tuple[str, str], ...]:
        """Every input a request row must carry: join keys, then request fields."""
        return self.join_keys + self.request_fields


def _declared_default(repo: RepoSpec, view: str, feature: str) -> float | None:
    spec = repo.views.get(view)
    if spec is None:
        return None
    for agg in spec.aggregations:
        if agg.name == feature:
            value = empty_value(agg.function)
            return None if value is None else float(value)
    return None


def feature_layout(repo: RepoSpec, service: str) -> FeatureLayout:
    """The layout of `service` (NotFoundError for an unknown service)."""
    columns: list[Column] = []
    omitted: list[str] = []
    keys: dict[str, str] = {}
    request: dict[str, str] = {}
    for f in resolve_features(repo, service=service, full_feature_names=True):
        name = f.output_name(True)
        if f.dtype not in NUMERIC_DTYPES:
            omitted.append(name)
        else:
            default = None if f.on_demand else _declared_default(repo, f.view, f.feature)
            columns.append(Column(name, f.view, f.feature, f.dtype, default))
        if f.on_demand:
            odfv = repo.on_demand_views[f.view]
            request.update({r.name: r.dtype for r in odfv.request_fields})
            for source, _ in odfv.sources:
                if source in repo.views:
                    keys.update({k.name: k.dtype for k in repo.views[source].join_keys})
        else:
            keys.update({k.name: k.dtype for k in repo.view(f.view).join_keys})
    return FeatureLayout(
        service=service,
        columns=tuple(columns),
        join_keys=tuple(keys.items()),
        request_fields=tuple((n, d) for n, d in request.items() if n not in keys),
        omitted=tuple(omitted),
    )
