"""`featureline consistency --logged`: skew on real traffic (Chronon's method).

`featureline serve` logs the vectors it serves for a feature service with a Feast
`logging_config` (serving_api.feature_log): per row the entity keys, the request time
(`__log_timestamp`), each feature's value and status. Here each logged (entity,
request time) is recomputed through point-in-time-correct historical retrieval
(batch.historical.get_historical_features, an entity row per logged row stamped with
its `__log_timestamp`), and the served values are compared with the offline ones per
feature with the sampled check's own rules and report (consistency.compare, render):
a served value counts as given only where its logged status is PRESENT.

An on-demand feature whose source views' join keys are not all in the log (Feast's
logging layout keeps only a projection's own keys, and an on-demand view's request
fields) cannot be recomputed: it is listed in `skipped_on_demand`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from featureline.batch.historical import get_historical_features
from featureline.cli.consistency.compare import compare_feature
from featureline.cli.consistency.render import html_page
from featureline.cli.consistency.run import ConsistencyReport
from featureline.dtypes import COMPOUND_DTYPES
from featureline.errors import BadInputError, NotFoundError
from featureline.offline import TS_TYPE
from featureline.offline_layout import arrow_type
from featureline.online.value_proto import plain_value
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.serving_api.feature_log_layout import LogLayout
from featureline.serving_api.feature_log_write import read_log
from featureline.serving_api.frame import PRESENT
from featureline.settings import Settings
from featureline.specs import RepoSpec

LOG_TS = "__log_timestamp"
_JSON_TEXT = ("map", "struct", "json")


@dataclass
class LoggedReport(ConsistencyReport):
    """A consistency report over logged rows: `sample` is the rows compared."""

    service: str = ""
    path: str = ""
    since_us: int = 0
    first_us: int = 0
    logged_rows: int = 0  # rows in the log since `since` (the newest `sample` compared)

    def to_dict(self) -> dict[str, Any]:
        def iso(us: int) -> str | None:
            return datetime.fromtimestamp(us / US, UTC).isoformat() if us else None

        return {
            **super().to_dict(),
            "mode": "logged",
            "service": self.service,
            "log_path": self.path,
            "since": iso(self.since_us),
            "first_logged": iso(self.first_us),
            "last_logged": iso(self.at_us),
            "logged_rows": self.logged_rows,
            "rows_compared": self.sample,
        }


@dataclass(frozen=True)
class _Feature:
    ref: str  # view:feature (historical retrieval's name)
    log_name: str  # alias__feature (the log's column)
    dtype: str


def logged_services(repo: RepoSpec, service: str | None) -> list[str]:
    if service is not None:
        if repo.service(service).logging is None:
            raise BadInputError(f"feature service {service!r} has no logging_config: nothing is logged")
        return [service]
    names = [n for n, s in sorted(repo.services.items()) if s.logging is not None]
    if not names:
        raise BadInputError("no feature service has a logging_config (Feast FileLoggingDestination)")
    return names


def check_logged(
    settings: Settings,
    service: str,
    *,
    since: datetime | None = None,
    max_rows: int = 10_000,
    repo: RepoSpec | None = None,
) -> LoggedReport:
    """Recompute the newest `max_rows` rows logged for `service` (since `since`)."""
    if max_rows < 1:
        raise BadInputError(f"--max-rows must be at least 1, got {max_rows}")
    began = time.perf_counter()
    repo = repo or load_repo(settings)
    spec = repo.service(service).logging
    if spec is None:
        raise BadInputError(f"feature service {service!r} has no logging_config: nothing is logged")
    layout = LogLayout.of(repo, service)
    since_us = int(since.timestamp() * US) if since is not None else 0
    table, logged = _read_rows(spec.path, read_log_or_fail(spec, layout), since_us, max_rows)
    features, skipped = _comparable(repo, service, layout)
    key_names = [k.name for k in layout.keys if k.name not in layout.request_fields]
    report = LoggedReport(0, table.num_rows, skipped=skipped, service=service, path=spec.path)
    report.since_us, report.logged_rows = since_us, logged
    report.entities[",".join(key_names)] = table.num_rows
    if table.num_rows:
        stamps = table[LOG_TS].cast(pa.int64())
        report.first_us, report.at_us = stamps[0].as_py(), stamps[-1].as_py()
        offline = _recompute(settings, repo, layout, table, [f.ref for f in features])
        keys = _row_keys(table, key_names)
        for f in features:
            served = _served(table, f)
            report.features.append(compare_feature(f.ref, keys, served, offline[f.ref], f.dtype))
    else:
        report.notes.append(f"no rows logged for {service} in {spec.path}" + (" since then" if since else ""))
    report.seconds = time.perf_counter() - began
    return report


def read_log_or_fail(spec: Any, layout: LogLayout) -> ds.Dataset:
    try:
        return read_log(spec, layout)
    except FileNotFoundError:
        raise NotFoundError(
            f"no feature log at {spec.path}: nothing was logged yet (is `featureline serve` running, "
            f"and is {layout.service} requested by feature service?)"
        ) from None
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(f"the feature log at {spec.path} cannot be read: {exc}") from None


def _read_rows(path: str, dataset: ds.Dataset, since_us: int, max_rows: int) -> tuple[pa.Table, int]:
    """The newest `max_rows` rows logged since `since_us`, oldest first; and how many
    rows were logged since then."""
    since = pa.scalar(since_us, pa.int64()).cast(TS_TYPE)
    try:
        table = dataset.to_table(filter=ds.field(LOG_TS) >= since) if since_us else dataset.to_table()
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(f"the feature log at {path} cannot be read: {exc}") from None
    logged = table.num_rows
    table = table.sort_by([(LOG_TS, "ascending"), ("__request_id", "ascending")])
    return table.slice(max(0, logged - max_rows)), logged


def _comparable(repo: RepoSpec, service: str, layout: LogLayout) -> tuple[list[_Feature], list[str]]:
    logged_keys = {k.name for k in layout.keys}
    features, skipped = [], []
    dtypes = {f.name: f.dtype for f in layout.features}
    for proj in repo.service(service).projections:
        odfv = repo.on_demand_views.get(proj.view)
        needs = {k for v, _ in odfv.sources for k in repo.view(v).join_key_names} if odfv else set()
        for name in proj.features:
            log_name = f"{proj.alias}__{name}"
            if needs - logged_keys:
                skipped.append(f"{proj.view}:{name}")
                continue
            features.append(_Feature(f"{proj.view}:{name}", log_name, dtypes[log_name]))
    return features, skipped


def _recompute(
    settings: Settings, repo: RepoSpec, layout: LogLayout, table: pa.Table, refs: list[str]
) -> dict[str, list[Any]]:
    """Historical retrieval of `refs` at each logged row's request time, by ref."""
    if not refs:
        return {}
    columns: dict[str, Any] = {k.name: table[k.name].cast(arrow_type(k.dtype)) for k in layout.keys}
    columns["event_timestamp"] = table[LOG_TS].cast(TS_TYPE)
    out = get_historical_features(
        pa.table(columns), refs, repo=repo, settings=settings, full_feature_names=True
    )
    result = {}
    for ref in refs:
        view, _, feature = ref.partition(":")
        dtype = _dtype(repo, view, feature)
        values = out[f"{view}__{feature}"].to_pylist()
        if dtype in COMPOUND_DTYPES or dtype == "unix_timestamp":
            values = [plain_value(dtype, v) for v in values]
        result[ref] = values
    return result


def _dtype(repo: RepoSpec, view: str, feature: str) -> str:
    spec = repo.on_demand_views.get(view) or repo.view(view)
    return next(f.dtype for f in spec.features if f.name == feature)


def _served(table: pa.Table, f: _Feature) -> list[Any]:
    """Logged values in the form the serving path decodes them; None unless PRESENT."""
    statuses = table[f"{f.log_name}__status"]
    present = pc.equal(statuses, PRESENT).to_pylist()
    values = table[f.log_name].to_pylist()
    out: list[Any] = []
    for value, ok in zip(values, present, strict=True):
        if not ok or value is None:
            out.append(None)
        elif f.dtype in _JSON_TEXT:
            out.append(json.loads(value))
        elif f.dtype == "unix_timestamp" or f.dtype.startswith("unix_timestamp"):
            out.append(plain_value(f.dtype, value))
        else:
            out.append(value)
    return out


def _row_keys(table: pa.Table, key_names: list[str]) -> list[dict[str, Any]]:
    """Each row's entity and request time, as the report's examples name them."""
    columns = {k: table[k].to_pylist() for k in key_names}
    stamps = table[LOG_TS].cast(pa.int64()).to_pylist()
    return [
        {**{k: columns[k][i] for k in key_names}, "at": datetime.fromtimestamp(t / US, UTC).isoformat()}
        for i, t in enumerate(stamps)
    ]


def write_logged_report(report: LoggedReport, out_dir: Path) -> tuple[Path, Path]:
    """consistency-logged-<service>-<time>.html and .json under out_dir (the sampled
    check's page; the JSON is its report's plus the log's fields, "mode": "logged")."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    stem = f"consistency-logged-{report.service}-{stamp}"
    page, data = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    page.write_text(html_page(report))
    data.write_text(json.dumps(report.to_dict(), indent=2, default=repr))
    return page, data
