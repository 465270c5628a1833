"""`check_consistency`: serve N entities online, recompute them offline, compare.

It composes two parts (serving_api reads, batch recomputes), so it sits in the tools
layer above both, like the CLI.

1. sample N entities per join-key set (consistency.sample);
2. read them through the serving path at instant t (serving_api.online_reader, the
   code the REST and gRPC servers run: Feast-format values with ttl, tiles merged at t);
3. compute the same features at the same t through historical retrieval
   (batch.historical.get_historical_features, one entity row per key stamped t);
4. compare per feature (consistency.compare), with the feature's declared type.

On-demand features are compared too: their request fields get seeded sample values
(`request_values`), the same on both paths, and their entities are sampled from the
sources of the views they read. One whose source views do not all carry its join keys
is left out and reported in `skipped_on_demand`.

t defaults to now: the online store holds latest values, so it can only answer for
an instant at or after the newest event it was given.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from featureline.batch.historical import get_historical_features
from featureline.cli.consistency.compare import FeatureAgreement, compare_feature
from featureline.cli.consistency.sample import EntityGroup, feature_groups, sample_keys
from featureline.config import online_store
from featureline.dtypes import COMPOUND_DTYPES
from featureline.errors import BadInputError
from featureline.offline import TS_TYPE
from featureline.offline_layout import arrow_type
from featureline.online.value_proto import plain_value
from featureline.online_store import open_reader, open_store
from featureline.repo import load_repo
from featureline.semantics import US
from featureline.serving_api.frame import PRESENT
from featureline.serving_api.online_reader import OnlineReader
from featureline.settings import Settings
from featureline.specs import FieldSpec, RepoSpec, resolve_features

# Entities per online read (one pipelined round trip each).
_READ_CHUNK = 500


@dataclass
class ConsistencyReport:
    at_us: int
    sample: int
    features: list[FeatureAgreement] = field(default_factory=list)
    entities: dict[str, int] = field(default_factory=dict)  # join keys -> sampled
    skipped: list[str] = field(default_factory=list)  # on-demand refs that could not be compared
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.features)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": datetime.fromtimestamp(self.at_us / US, UTC).isoformat(),
            "sample": self.sample,
            "entities": self.entities,
            "skipped_on_demand": self.skipped,
            "notes": self.notes,
            "ok": self.ok,
            "features": [f.to_dict() for f in self.features],
        }


def check_consistency(
    settings: Settings,
    sample: int = 1000,
    *,
    refs: list[str] | None = None,
    service: str | None = None,
    at: datetime | None = None,
    seed: int = 0,
    repo: RepoSpec | None = None,
) -> ConsistencyReport:
    if sample < 1:
        raise BadInputError(f"--sample must be at least 1, got {sample}")
    began = time.perf_counter()
    if repo is None:
        repo = load_repo(settings)
    open_store(online_store(settings)).close()  # a login/TLS error stops here, in one line
    t = at or datetime.now(UTC)
    t_us = int(t.timestamp()) * US + t.microsecond
    if refs is None and service is None:  # every online view's features, on-demand too
        refs = [f"{v.name}:{f}" for _, v in sorted(repo.views.items()) if v.online for f in v.feature_names]
        refs += [f"{o.name}:{f}" for _, o in sorted(repo.on_demand_views.items()) for f in o.feature_names]
    groups, on_demand = feature_groups(repo, refs, service)
    odfv_groups, skipped = on_demand_groups(repo, on_demand)
    report = ConsistencyReport(t_us, sample, skipped=skipped)
    if at is not None and at < datetime.now(UTC):
        report.notes.append(
            "t is in the past: online latest values written after t count as mismatches/extra "
            "(the online store keeps the newest value only)"
        )
    for group, request_fields in [(g, ()) for g in groups] + odfv_groups:
        keys = sample_keys(group, sample, seed)
        report.entities[",".join(group.key_names)] = len(keys)
        if not keys:
            report.features += [FeatureAgreement(ref) for ref in group.refs]
            continue
        request = request_values(request_fields, len(keys), seed)
        online = read_online(settings, repo, group, keys, t_us, request)
        offline = read_offline(settings, repo, group, keys, t_us, request)
        for ref in group.refs:
            column = _full_name(ref)
            report.features.append(
                compare_feature(ref, keys, online[column], offline[column], _dtype(repo, ref))
            )
    report.seconds = time.perf_counter() - began
    return report


def on_demand_groups(
    repo: RepoSpec, refs: list[str]
) -> tuple[list[tuple[EntityGroup, tuple[FieldSpec, ...]]], list[str]]:
    """On-demand refs as (group of the views they read, request fields), one group per
    on-demand view; and the refs left out (a source view lacks one of the join keys)."""
    by_view: dict[str, list[str]] = {}
    for ref in refs:
        by_view.setdefault(ref.partition(":")[0], []).append(ref)
    out, skipped = [], []
    for name, view_refs in by_view.items():
        odfv = repo.on_demand_views[name]
        views = tuple(repo.view(v) for v, _ in odfv.sources)
        keys: dict[str, FieldSpec] = {}
        for view in views:
            keys.update({k.name: k for k in view.join_keys})
        if any(set(keys) - set(v.join_key_names) for v in views):
            skipped += view_refs  # keys cannot be sampled from one source
            continue
        out.append((EntityGroup(tuple(keys.values()), tuple(view_refs), views), odfv.request_fields))
    return out, skipped


def request_values(fields: tuple[FieldSpec, ...], n: int, seed: int) -> dict[str, list[Any]]:
    """Seeded sample values of an on-demand view's request fields, a few null: the same
    on the online and the offline path."""
    rng = random.Random(seed)
    draw = {
        "int32": lambda: rng.randrange(-1000, 1000),
        "int64": lambda: rng.randrange(-(10**6), 10**6),
        "float32": lambda: float(rng.randrange(-4096, 4096)) / 8,  # exact in float32
        "float64": lambda: round(rng.uniform(-1000, 1000), 2),
        "string": lambda: rng.choice(["DE", "FR", "NL", "US"]),
        "bool": lambda: rng.random() < 0.5,
    }
    out = {}
    for f in fields:
        if f.dtype not in draw:
            raise BadInputError(f"request field {f.name!r}: no sample values for type {f.dtype}")
        out[f.name] = [None if rng.random() < 0.05 else draw[f.dtype]() for _ in range(n)]
    return out


def _dtype(repo: RepoSpec, ref: str) -> str:
    view, _, feature = ref.partition(":")
    spec = repo.on_demand_views.get(view) or repo.view(view)
    return next(f.dtype for f in spec.features if f.name == feature)


def _full_name(ref: str) -> str:
    view, _, feature = ref.partition(":")
    return f"{view}__{feature}"


def _key_columns(group: EntityGroup, keys: list[tuple[Any, ...]]) -> dict[str, list[Any]]:
    return {name: [k[i] for k in keys] for i, name in enumerate(group.key_names)}


def read_online(
    settings: Settings,
    repo: RepoSpec,
    group: EntityGroup,
    keys: list[tuple[Any, ...]],
    t_us: int,
    request: dict[str, list[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Values as the serving path returns them at t; None unless PRESENT. `request`:
    on-demand views' request fields, one value per key."""
    request = request or {}

    async def read_all() -> dict[str, list[Any]]:
        client = open_reader(online_store(settings))
        reader = OnlineReader(repo, client)
        plan = reader.plan(list(group.refs), None, True)
        out: dict[str, list[Any]] = {}
        try:
            for lo in range(0, len(keys), _READ_CHUNK):
                part = keys[lo : lo + _READ_CHUNK]
                columns = _key_columns(group, part)
                columns.update({n: v[lo : lo + _READ_CHUNK] for n, v in request.items()})
                frame = await reader.read(plan, columns, t_us=t_us)
                for col in frame.columns:
                    values = [
                        v if s == PRESENT else None for v, s in zip(col.values, col.statuses, strict=True)
                    ]
                    out.setdefault(col.name, []).extend(values)
        finally:
            client.close()
        return out

    return asyncio.run(read_all())


def read_offline(
    settings: Settings,
    repo: RepoSpec,
    group: EntityGroup,
    keys: list[tuple[Any, ...]],
    t_us: int,
    request: dict[str, list[Any]] | None = None,
) -> dict[str, list[Any]]:
    """Values historical retrieval computes for the same entities (and request fields)
    at the same t."""
    columns: dict[str, Any] = {}
    for i, spec in enumerate(group.join_keys):
        columns[spec.name] = pa.array([k[i] for k in keys], arrow_type(spec.dtype))
    types = {f.name: f.dtype for o in repo.on_demand_views.values() for f in o.request_fields}
    for name, values in (request or {}).items():
        columns[name] = pa.array(values, arrow_type(types[name]))
    columns["event_timestamp"] = pa.array([t_us] * len(keys), pa.int64()).cast(TS_TYPE)
    table = get_historical_features(
        pa.table(columns), list(group.refs), repo=repo, settings=settings, full_feature_names=True
    )
    out = {name: table[name].to_pylist() for name in table.column_names}
    # Types whose Arrow values differ in form from the decoded online ones (timestamps,
    # arrays, maps): in the online form, so that they compare by value.
    for feature in resolve_features(repo, list(group.refs), full_feature_names=True):
        name = feature.output_name(True)
        if feature.dtype in COMPOUND_DTYPES or feature.dtype == "unix_timestamp":
            out[name] = [plain_value(feature.dtype, v) for v in out[name]]
    return out
