"""What a logged feature service's rows hold (Feast's logging layout), worked out once
from the specs: shared by the request path (serving_api.feature_log), the writer
(serving_api.feature_log_write) and `featureline consistency --logged`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from featureline.errors import BadInputError
from featureline.specs import FieldSpec, RepoSpec

# Feast's system columns (feast.feature_logging: LOG_TIMESTAMP_FIELD, LOG_DATE_FIELD,
# REQUEST_ID_FIELD), last in every log.
SYSTEM_COLUMNS = ("__log_timestamp", "__log_date", "__request_id")


@dataclass(frozen=True)
class LogLayout:
    """What one logged service's rows hold, in Feast's order
    (feast.feature_logging.FeatureServiceLoggingSource.get_schema): per projection its
    view's join keys (an on-demand view: its request fields), then per feature
    `{alias}__{feature}`, `..__timestamp`, `..__status`; then `__log_timestamp`,
    `__log_date`, `__request_id`. `features` align with the served frame's columns."""

    service: str
    keys: tuple[FieldSpec, ...]  # join keys and request fields, first seen first
    request_fields: frozenset[str]
    features: tuple[FieldSpec, ...]  # log name (alias__feature) and dtype, served order
    order: tuple[tuple[str, int], ...]  # ("key", i) / ("feature", i) in Feast's order

    @classmethod
    def of(cls, repo: RepoSpec, service: str) -> LogLayout:
        keys: dict[str, FieldSpec] = {}
        requests: set[str] = set()
        features: list[FieldSpec] = []
        order: list[tuple[str, int]] = []
        for proj in repo.service(service).projections:
            if proj.view in repo.on_demand_views:
                odfv = repo.on_demand_views[proj.view]
                new_keys = list(odfv.request_fields)
                requests.update(f.name for f in new_keys)
                dtypes = {f.name: f.dtype for f in odfv.features}
            else:
                view = repo.view(proj.view)
                new_keys = list(view.join_keys)
                dtypes = {f.name: f.dtype for f in view.features}
            for key in new_keys:
                if key.name not in keys:
                    order.append(("key", len(keys)))
                    keys[key.name] = key
            for feature in proj.features:
                order.append(("feature", len(features)))
                features.append(FieldSpec(f"{proj.alias}__{feature}", dtypes[feature]))
        return cls(service, tuple(keys.values()), frozenset(requests), tuple(features), tuple(order))

    def column_names(self) -> list[str]:
        names = []
        for kind, i in self.order:
            if kind == "key":
                names.append(self.keys[i].name)
            else:
                name = self.features[i].name
                names += [name, f"{name}__timestamp", f"{name}__status"]
        return names + list(SYSTEM_COLUMNS)

    def check_partitions(self, partition_by: Sequence[str]) -> None:
        """Partition columns must be columns of the log (a typo would lose every write)."""
        unknown = [p for p in partition_by if p not in self.column_names()]
        if unknown:
            raise BadInputError(
                f"feature service {self.service!r}: logging partition_by {unknown} names no column "
                f"of its log; columns: {', '.join(self.column_names())}"
            )
