"""`featureline bench serve --feature-logging`: what feature logging costs batch-1 serving.

The bench's repo is copied into the bench's directory with one more feature service,
`bench_logged`: every plain view of the repo (what the plain batch-1 phases read), with
a Feast `logging_config` (FileLoggingDestination into the bench's directory). Three
`featureline serve` on that copy read the same Redis, with the plaintext server's flags
and `--feature-log-sample-rate` 0 (logging off), 0.01 and 1. Batch-1 requests by that
feature service, REST and gRPC, closed loop at --concurrency; each phase runs off, 1%,
100%, 100%, 1%, off (each --seconds long) and pools a side's two runs, as tls.py does,
so a load that drifts during the phase hits every side alike. Then each server's
/metrics gives the rows it logged and dropped.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import httpx

from benchmarks.loadgen.generator import LoadResult
from benchmarks.serve import setup
from benchmarks.serve.cluster import _pooled  # the same pooling as the cluster comparison
from featureline.serving_api.client import online_request
from featureline.settings import Settings
from featureline.specs import RepoSpec

SERVICE = "bench_logged"
RATES = {"off": "0", "1%": "0.01", "100%": "1"}

_DEFINITION = '''
"""Written by `featureline bench serve --feature-logging`: the plain views, logged."""
import importlib

from feast import FeatureService, FeatureView
from feast.feature_logging import LoggingConfig
from feast.infra.offline_stores.file_source import FileLoggingDestination

_views = {{}}
for _name in {modules!r}:
    for _obj in vars(importlib.import_module(_name)).values():
        if isinstance(_obj, FeatureView) and _obj.name in {views!r}:
            _views[_obj.name] = _obj

bench_logged = FeatureService(
    name="bench_logged",
    features=[_views[n] for n in {views!r}],
    logging_config=LoggingConfig(destination=FileLoggingDestination(path={path!r}), sample_rate=1.0),
)
'''


def logged_repo(bench: Settings, repo: RepoSpec) -> Path:
    """The bench's repo, copied, plus the logged service over its plain online views."""
    dest = bench.home / "logged-repo"
    shutil.copytree(bench.repo, dest, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    modules = sorted(p.stem for p in dest.glob("*.py"))
    views = sorted(v.name for v in repo.views.values() if v.online and not v.is_aggregating)
    text = _DEFINITION.format(modules=modules, views=views, path=str(bench.home / "feature-logs"))
    (dest / "bench_feature_logging.py").write_text(text)
    return dest


def start_servers(bench: Settings, args: Any, procs: list[Any], repo: RepoSpec) -> dict[str, Any]:
    """Three `featureline serve` on the logged copy: logging off, at 1% and at 100%."""
    import dataclasses

    from featureline.cli.devstack import free_ports

    copy = logged_repo(bench, repo)
    settings = dataclasses.replace(bench, repo=copy)
    ports: dict[str, tuple[int, int]] = {}
    for side, rate in RATES.items():
        http, grpc = free_ports(2)
        proc = setup.spawn(f"featureline-serve-log-{side.strip('%')}", [
            sys.executable, "-m", "featureline.cli", "serve", "--repo", str(copy),
            "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
            "--workers", str(args.workers), "--max-in-flight", "4096",
            "--near-cache-keys", str(args.near_cache_keys), "--feature-log-sample-rate", rate,
        ], settings)  # fmt: skip
        procs.append(proc)
        setup.wait_port(proc, "127.0.0.1", http)
        setup.wait_port(proc, "127.0.0.1", grpc)
        ports[side] = (http, grpc)
    return {"feature_log_ports": ports}


def _bodies(w: Any) -> tuple[list[bytes], list[bytes]]:
    import orjson

    rest, grpc = [], []
    for _ in range(w.single_bodies):
        entities = w.make_entities(1, False)
        rest.append(orjson.dumps({"feature_service": SERVICE, "entities": entities}))
        grpc.append(online_request(None, SERVICE, entities, False).SerializeToString())
    return rest, grpc


def _logged_counts(http_port: int) -> tuple[float, float]:
    """(rows logged, rows dropped) of the logged service, from the server's /metrics."""
    text = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
    counts = []
    for kind in ("rows", "dropped"):
        name = f"featureline_serving_feature_log_{kind}_total"
        line = next((x for x in text.splitlines() if x.startswith(f'{name}{{service="{SERVICE}"}}')), "")
        counts.append(float(line.split()[-1]) if line else 0.0)
    return counts[0], counts[1]


async def compare(w: Any, s: dict[str, Any], r: Any, conc: int, secs: float) -> None:
    """Batch 1 by feature service, REST and gRPC: logging off, at 1% and at 100%."""
    from benchmarks.serve.phases import FEAST_GRPC_METHOD, _grpc, _rest

    rest, grpc = _bodies(w)
    ports = s["feature_log_ports"]
    phases = [
        ("batch 1 REST by service", lambda h, g: _rest(h, rest, conc, secs)),
        ("batch 1 gRPC by service", lambda h, g: _grpc(g, FEAST_GRPC_METHOD, grpc, conc, secs)),
    ]
    print(f"feature logging ({SERVICE}: the plain views), off vs 1% vs 100% (runs off, 1%, 100%, "
          "100%, 1%, off; pooled):", flush=True)  # fmt: skip
    for phase, measure in phases:
        runs: dict[str, list[LoadResult]] = {side: [] for side in RATES}
        for side in ("off", "1%", "100%", "100%", "1%", "off"):
            runs[side].append(await measure(*ports[side]))
        rows = {side: r.add(phase, f"fl-log-{side}", _pooled(*runs[side])) for side in RATES}
        for side in ("1%", "100%"):
            cost = rows["off"]["rps"] / rows[side]["rps"] - 1 if rows[side]["rps"] else 0.0
            p99 = rows[side]["p99_ms"] - rows["off"]["p99_ms"]
            r.rows.append({"phase": f"{phase}: logging {side} overhead", "figure": "rps",
                           "overhead": round(cost, 3), "p99_delta_ms": round(p99, 3)})  # fmt: skip
            print(f"  => {phase}: logging {side}: {cost:+.1%} time per request (from req/s), "
                  f"p99 {p99:+.2f} ms", flush=True)  # fmt: skip
    for side in ("1%", "100%"):
        logged, dropped = _logged_counts(ports[side][0])
        r.rows.append({"phase": f"feature log {side}", "rows_logged": logged, "rows_dropped": dropped})
        print(f"  => logging {side}: {logged:.0f} rows logged, {dropped:.0f} dropped "
              "(written so far; the last flush comes at shutdown)", flush=True)  # fmt: skip
