"""Per-feature, per-day statistics of an Arrow table, and their JSON form.

A table is whatever holds feature values in columns: a view's offline rows (columns
named as the features), a training set or Feast's feature-logging files (columns named
`{view}__{feature}`, full feature names). `columns` says which column is which
(view, feature); the day of a row is the UTC date of its timestamp column.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from featureline.errors import BadInputError
from featureline.specs import RepoSpec, resolve_features
from featureline.stats.column import ColumnStats

FORMAT = "featureline.stats"
VERSION = 1
ALL_DAYS = "all"  # the day key of a table without a timestamp column


def model_stats_path(model: Path) -> Path:
    """Where a model's training-set statistics live: beside it (x.pt -> x.stats.json),
    so they travel with the model file."""
    return model.with_suffix(".stats.json")


@dataclass(frozen=True)
class Column:
    name: str  # the table's column
    view: str
    feature: str


@dataclass
class FeatureStats:
    view: str
    feature: str
    column: str
    days: dict[str, ColumnStats] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.view, self.feature)

    def total(self, days: set[str] | None = None) -> ColumnStats | None:
        """The merge of all days (or of `days`); None when none is there."""
        parts = [s for d, s in sorted(self.days.items()) if days is None or d in days]
        if not parts:
            return None
        out = parts[0]
        for part in parts[1:]:
            out = out.merge(part)
        return out


@dataclass
class StatsSet:
    """Statistics of one source (offline store, training set, logged vectors)."""

    source: dict[str, Any]  # what was measured: kind, path, service, days
    features: list[FeatureStats]
    created_at: float = field(default_factory=time.time)

    def by_key(self) -> dict[tuple[str, str], FeatureStats]:
        return {f.key: f for f in self.features}

    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "version": VERSION,
            "created_at": self.created_at,
            "source": self.source,
            "features": [
                {
                    "view": f.view,
                    "feature": f.feature,
                    "column": f.column,
                    "days": {d: s.to_dict() for d, s in sorted(f.days.items())},
                }
                for f in self.features
            ],  # fmt: skip
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, origin: str = "statistics") -> StatsSet:
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT or d.get("version") != VERSION:
                raise ValueError(f"not {FORMAT} version {VERSION}")
            features = [
                FeatureStats(f["view"], f["feature"], f["column"],
                             {day: ColumnStats.from_dict(s) for day, s in f["days"].items()})
                for f in d["features"]
            ]  # fmt: skip
            return cls(dict(d["source"]), features, float(d["created_at"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BadInputError(f"{origin} is not a Featureline statistics file: {exc}") from None


def day_keys(table: pa.Table, ts_column: str | None) -> pa.Array:
    """The UTC date (YYYY-MM-DD) of every row; ALL_DAYS without a timestamp column.
    A null timestamp goes to the day "unknown"."""
    if ts_column is None:
        return pa.array([ALL_DAYS] * table.num_rows, pa.string())
    ts = table.column(ts_column)
    if pa.types.is_date(ts.type):
        ts = ts.cast(pa.timestamp("s"))
    if not pa.types.is_timestamp(ts.type):
        raise BadInputError(f"column {ts_column!r} is {ts.type}, not a timestamp")
    if ts.type.tz is None:
        ts = pc.assume_timezone(ts, "UTC")
    days = pc.strftime(ts.cast(pa.timestamp("us", "UTC")), format="%Y-%m-%d", locale="C")
    return pc.fill_null(days, "unknown").combine_chunks()


def table_stats(table: pa.Table, columns: list[Column], ts_column: str | None) -> list[FeatureStats]:
    """Statistics of each of `columns` for each day of `ts_column`."""
    days = day_keys(table, ts_column)
    encoded = days.dictionary_encode()
    labels = encoded.dictionary.to_pylist()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(labels) + 1))
    out = [FeatureStats(c.view, c.feature, c.name) for c in columns]
    for code, day in enumerate(labels):
        rows = table.take(pa.array(order[bounds[code] : bounds[code + 1]]))
        for fs, col in zip(out, columns, strict=True):
            fs.days[day] = ColumnStats.of(rows.column(col.name))
    return out


def full_name_columns(repo: RepoSpec, names: list[str], service: str | None = None) -> list[Column]:
    """The `{view}__{feature}` columns of `names` (a training set, logged vectors):
    through the service's projections (aliases included) when one is named, else any
    view of the repo with that feature. Other columns (keys, times, statuses) are left."""
    known: dict[str, tuple[str, str]] = {}
    if service is not None:
        for f in resolve_features(repo, service=service, full_feature_names=True):
            known[f.output_name(True)] = (f.view, f.feature)
    else:
        for view in repo.views.values():
            known.update({f"{view.name}__{f.name}": (view.name, f.name) for f in view.features})
        for odfv in repo.on_demand_views.values():
            known.update({f"{odfv.name}__{f.name}": (odfv.name, f.name) for f in odfv.features})
    out = [Column(n, *known[n]) for n in names if n in known]
    if not out:
        raise BadInputError(
            "no column is a feature of the repo under its full name (view__feature); columns: "
            + ", ".join(names[:20])
        )
    return out


def training_set_stats(
    table: pa.Table, repo: RepoSpec, service: str | None, ts_column: str | None, origin: str
) -> StatsSet:
    """A training set's features (full feature names), per day of `ts_column`."""
    if ts_column is not None and ts_column not in table.column_names:
        raise BadInputError(f"{origin}: no timestamp column {ts_column!r}; name it with --timestamp-column")
    columns = full_name_columns(repo, table.column_names, service)
    source = {"kind": "training_set", "path": origin, "service": service, "rows": table.num_rows}
    return StatsSet(source, table_stats(table, columns, ts_column))
