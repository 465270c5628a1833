"""The measured phases of `featureline bench serve` and their report (the package
docstring says what each phase measures)."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from benchmarks.loadgen import wrk
from benchmarks.loadgen.generator import LoadResult, grpc_callers, http_callers, run_closed, run_open
from benchmarks.loadgen.grpc_raw import raw_grpc_callers
from benchmarks.serve.setup import children, random_value, rss_bytes
from featureline.dtypes import NUMERIC_DTYPES
from featureline.serving_api.client import online_request, tensor_request
from featureline.serving_api.proto import FEAST_GRPC_SERVER_NAME, SERVICE_NAME
from featureline.serving_api.tls import ALPN_GRPC, ALPN_HTTP, ClientTls
from featureline.specs import RepoSpec

N_BODIES = 200  # distinct request bodies per workload, taken in turn
# Batch 1: 5,000 distinct bodies by default (users and merchants drawn at random), so a
# closed loop of ~10^5 requests spreads over thousands of entities, not a few hundred
# (`bench serve --bodies`; 200 before 2026-11-22 21:15). Feast's batch-1 REST rate moves
# between runs on this machine: 2.5-2.9k req/s measured with 200 bodies, 1.4-2.2k with
# 5,000 (BENCHMARKS.md).
N_SINGLE_BODIES = 5_000
FEAST_GRPC_METHOD = f"/{FEAST_GRPC_SERVER_NAME}/GetOnlineFeatures"
TENSOR_METHOD = f"/{SERVICE_NAME}/GetOnlineTensor"


@dataclass
class Workload:
    """Request bodies: `plain` reads every feature of the plain views (what both servers
    can serve); `service` is the whole feature service (tiles + on-demand views)."""

    plain_refs: list[str]
    service: str
    make_entities: Callable[[int, bool], dict[str, list[Any]]]
    single_bodies: int = N_SINGLE_BODIES
    # The plain views' numeric features: what a tensor call may name (a string is a 400).
    tensor_refs: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, repo: RepoSpec, keys: dict[str, list[Any]], service: str, seed: int,
              single_bodies: int = N_SINGLE_BODIES) -> Workload:  # fmt: skip
        rng = random.Random(seed)
        plain = [view for view in repo.views.values() if view.online and not view.is_aggregating]
        refs = [f"{v.name}:{f}" for v in plain for f in v.feature_names]
        numeric = [f"{v.name}:{f.name}" for v in plain for f in v.features if f.dtype in NUMERIC_DTYPES]
        key_names = sorted({k for v in repo.views.values() for k in v.join_key_names})
        request_fields = {f.name: f.dtype for o in repo.on_demand_views.values()
                          for f in o.request_fields}  # fmt: skip

        def entities(batch: int, with_request: bool) -> dict[str, list[Any]]:
            out = {k: [rng.choice(keys[k]) for _ in range(batch)] for k in key_names}
            if with_request:
                for name, dtype in request_fields.items():
                    out[name] = [random_value(dtype, rng) for _ in range(batch)]
            return out

        return cls(refs, service, entities, single_bodies, numeric)

    def rest(self, batch: int, service: bool = False) -> list[bytes]:
        kind: dict[str, Any] = {"feature_service": self.service} if service else {"features": self.plain_refs}
        n = self.single_bodies if batch == 1 else N_BODIES
        return [orjson.dumps({**kind, "entities": self.make_entities(batch, service)})
                for _ in range(n)]  # fmt: skip

    def grpc(self, batch: int) -> list[bytes]:
        return [
            online_request(self.plain_refs, None, self.make_entities(batch, False), False).SerializeToString()
            for _ in range(self.single_bodies if batch == 1 else N_BODIES)
        ]

    def cold_tensor(self, keys: dict[str, list[Any]], batch: int) -> list[bytes]:
        """Whole-service tensor requests over disjoint slices of the entities: none was
        requested before, so no memoized window value helps."""
        first = max(keys, key=lambda k: len(keys[k]))  # the card holders
        bodies = []
        for lo in range(0, len(keys[first]) - batch + 1, batch):
            entities = self.make_entities(batch, True)
            entities[first] = keys[first][lo : lo + batch]
            bodies.append(tensor_request(None, self.service, entities, False, 0.0).SerializeToString())
        return bodies

    def tensor(self, batch: int, service: bool) -> list[bytes]:
        refs = None if service else self.tensor_refs
        name = self.service if service else None
        return [
            tensor_request(refs, name, self.make_entities(batch, service), False, 0.0).SerializeToString()
            for _ in range(max(4, N_BODIES // batch))
        ]


Runner = Callable[[], Awaitable[LoadResult]]


async def _rest(port: int, bodies: list[bytes], conc: int, secs: float, rate: float = 0,
                tls: ClientTls | None = None) -> LoadResult:  # fmt: skip
    context = tls.ssl_context(ALPN_HTTP) if tls is not None else None
    callers = http_callers("127.0.0.1", port, "/get-online-features", conc, tls=context)
    if rate:
        return await run_open(callers, bodies, rate, secs)
    return await run_closed(callers, bodies, secs)


async def _grpc(port: int, method: str, bodies: list[bytes], conc: int, secs: float,
                rate: float = 0, raw: bool = True, tls: ClientTls | None = None) -> LoadResult:  # fmt: skip
    """Small calls through the raw HTTP/2 caller, batch 1000 (raw=False) through grpc.aio."""
    if raw:
        context = tls.ssl_context(ALPN_GRPC) if tls is not None else None
        callers, close = raw_grpc_callers("127.0.0.1", port, method, conc, tls=context)
    else:
        credentials = tls.grpc_credentials() if tls is not None else None
        callers, close = grpc_callers(f"127.0.0.1:{port}", method, conc, credentials=credentials)
    try:
        if rate:
            return await run_open(callers, bodies, rate, secs)
        return await run_closed(callers, bodies, secs)
    finally:
        await close()


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, phase: str, system: str, result: LoadResult, **extra: Any) -> dict[str, Any]:
        row = {"phase": phase, "system": system, **result.summary(), **extra}
        self.rows.append(row)
        print(
            f"  {phase:<44} {system:<11} {row['rps']:>9.0f} req/s  p50 {row['p50_ms']:>7.2f} ms"
            f"  p99 {row['p99_ms']:>7.2f} ms  errors {row['errors']}",
            flush=True,
        )
        if "service_p99_ms" in row:
            print(
                f"  {'':<44} {'':<11} from send: p50 {row['service_p50_ms']:.2f} ms, "
                f"p99 {row['service_p99_ms']:.2f} ms; generator lag p99 {row['lag_p99_ms']:.2f} ms",
                flush=True,
            )
        return row

    def ratio(self, label: str, ours: float, feast: float, goal: str) -> None:
        value = ours / feast if feast else float("inf")
        self.rows.append({"phase": label, "ratio": round(value, 1), "goal": goal})
        print(f"  => {label}: {value:.1f}x  ({goal})", flush=True)

    def goal(self, label: str, value: float, limit: float) -> None:
        met = value <= limit
        self.rows.append({"phase": label, "value_ms": round(value, 3), "limit_ms": limit,
                          "met": met})  # fmt: skip
        print(f"  => {label}: {value:.2f} ms (goal <= {limit} ms: {'met' if met else 'NOT met'})")


async def _batch1(w: Workload, s: dict[str, Any], r: Report, conc: int, secs: float,
                  feast: bool) -> None:  # fmt: skip
    rest, grpc_bodies = w.rest(1), w.grpc(1)
    await _warm(s, rest, grpc_bodies, conc, feast)
    print("batch 1 (plain views), closed loop:", flush=True)
    if feast:
        f_rest = r.add("batch 1 REST", "feast", await _rest(s["feast_http"], rest, conc, secs))
    o_rest = r.add("batch 1 REST", "featureline", await _rest(s["ours_http"], rest, conc, secs))
    if feast:
        f_grpc = r.add("batch 1 gRPC", "feast", await _grpc(s["feast_grpc"], FEAST_GRPC_METHOD,
                                                           grpc_bodies, conc, secs))  # fmt: skip
    o_grpc = r.add("batch 1 gRPC", "featureline", await _grpc(s["ours_grpc"], FEAST_GRPC_METHOD,
                                                             grpc_bodies, conc, secs))  # fmt: skip
    if feast:
        r.ratio("batch 1 REST req/s ours/feast", o_rest["rps"], f_rest["rps"], "goal >= 10x")
        r.ratio("batch 1 gRPC req/s ours/feast", o_grpc["rps"], f_grpc["rps"], "goal >= 10x")
    await _batch1_wrk(rest, s, r, conc, secs, feast)
    print("batch 1 at half our peak rate, open loop:", flush=True)
    half = r.add("batch 1 REST @ half peak", "featureline",
                 await _rest(s["ours_http"], rest, conc * 4, secs, rate=o_rest["rps"] / 2))  # fmt: skip
    r.goal("batch 1 REST p99 at half peak (from send)", half["service_p99_ms"], 3.0)
    half_g = r.add("batch 1 gRPC @ half peak", "featureline",
                   await _grpc(s["ours_grpc"], FEAST_GRPC_METHOD, grpc_bodies, conc * 4, secs,
                               rate=o_grpc["rps"] / 2))  # fmt: skip
    r.goal("batch 1 gRPC p99 at half peak (from send)", half_g["service_p99_ms"], 3.0)
    s["half_rest_rate"], s["half_grpc_rate"] = o_rest["rps"] / 2, o_grpc["rps"] / 2


async def _warm(s: dict[str, Any], rest: list[bytes], grpc_bodies: list[bytes], conc: int,
                feast: bool) -> None:  # fmt: skip
    """Two untimed seconds on each port first: Feast's first REST phase of a run came out
    at 441-447 req/s against its usual ~1,000-1,150 (its workers warming up), which made
    that run's ratio 17x."""
    ports = [("ours_http", "ours_grpc")] + ([("feast_http", "feast_grpc")] if feast else [])
    for http, grpc_port in ports:
        await _rest(s[http], rest, conc, 2.0)
        await _grpc(s[grpc_port], FEAST_GRPC_METHOD, grpc_bodies, conc, 2.0)


async def _batch1_wrk(rest: list[bytes], s: dict[str, Any], r: Report, conc: int, secs: float,
                      feast: bool) -> None:  # fmt: skip
    """The batch-1 REST phase again, driven by wrk (benchmarks/loadgen/wrk.py says why)."""
    if not wrk.available():
        print("  (wrk not installed: the REST phase driven by wrk is skipped; `make install`)")
        return
    path = "/get-online-features"
    if feast:
        f_rest = r.add(
            "batch 1 REST, wrk generator", "feast", await wrk.run_wrk(s["feast_http"], path, rest, conc, secs)
        )
    o_rest = r.add("batch 1 REST, wrk generator", "featureline",
                   await wrk.run_wrk(s["ours_http"], path, rest, conc, secs))  # fmt: skip
    if feast:
        r.ratio("batch 1 REST req/s ours/feast, wrk generator", o_rest["rps"], f_rest["rps"], "goal >= 10x")


async def _batch100(w: Workload, s: dict[str, Any], r: Report, conc: int, secs: float,
                    feast: bool) -> None:  # fmt: skip
    bodies = w.rest(100)
    print("batch 100 (plain views), REST:", flush=True)
    for c in (1, conc):
        if feast:
            f = r.add(f"batch 100 REST c={c}", "feast", await _rest(s["feast_http"], bodies, c, secs))
        o = r.add(f"batch 100 REST c={c}", "featureline", await _rest(s["ours_http"], bodies, c, secs))
        if feast:
            r.ratio(f"batch 100 REST c={c} req/s ours/feast", o["rps"], f["rps"], "throughput")
        if c == 1:
            r.goal("batch 100 REST p50", o["p50_ms"], 5.0)


async def _batch1000(w: Workload, s: dict[str, Any], r: Report, secs: float, feast: bool) -> None:
    print("batch 1000, tensor call (gRPC) at concurrency 1:", flush=True)
    if s.get("keys"):
        cold = w.cold_tensor(s["keys"], 1000)[:10]
        callers, close = grpc_callers(f"127.0.0.1:{s['ours_grpc']}", TENSOR_METHOD, 1)
        started, latencies, errors = time.perf_counter(), [], 0
        for body in cold:
            t0 = time.perf_counter()
            errors += not await callers[0](body)
            latencies.append(time.perf_counter() - t0)
        await close()
        result = LoadResult(len(cold), errors, time.perf_counter() - started,
                            np.array(latencies) * 1000)  # fmt: skip
        r.add(f"batch 1000 tensor, {w.service}, cold", "featureline", result)
    port = s["ours_grpc"]
    plain = r.add("batch 1000 tensor, plain views", "featureline",
                  await _grpc(port, TENSOR_METHOD, w.tensor(1000, False), 1, secs, raw=False))  # fmt: skip
    r.goal("batch 1000 tensor p50 (plain views)", plain["p50_ms"], 15.0)
    full = r.add(f"batch 1000 tensor, {w.service}", "featureline",
                 await _grpc(port, TENSOR_METHOD, w.tensor(1000, True), 1, secs, raw=False))  # fmt: skip
    r.goal(f"batch 1000 tensor p50 ({w.service})", full["p50_ms"], 15.0)
    if feast:
        bodies = w.rest(1000)[:8]
        f = r.add("batch 1000 REST JSON, plain views", "feast",
                  await _rest(s["feast_http"], bodies, 1, secs))  # fmt: skip
        r.ratio("batch 1000 p50 feast REST / our tensor", f["p50_ms"], plain["p50_ms"], "speed-up")


async def _service_batch1(w: Workload, s: dict[str, Any], r: Report, conc: int, secs: float) -> None:
    print(f"batch 1, whole service {w.service} (tiles + on-demand), REST:", flush=True)
    r.add(f"batch 1 REST {w.service}", "featureline",
          await _rest(s["ours_http"], w.rest(1, service=True), conc, secs))  # fmt: skip


async def _soak(w: Workload, s: dict[str, Any], r: Report, conc: int, secs: float) -> None:
    print(f"soak {secs:.0f} s at half peak (REST + gRPC together):", flush=True)
    workers = children(s["ours"].popen.pid)
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(sum(rss_bytes(p) for p in workers))
            await asyncio.sleep(max(1.0, secs / 20))

    sampler = asyncio.ensure_future(sample())
    rest, grpc_res = await asyncio.gather(
        _rest(s["ours_http"], w.rest(1), conc * 4, secs, rate=s["half_rest_rate"] / 2),
        _grpc(s["ours_grpc"], FEAST_GRPC_METHOD, w.grpc(1), conc * 4, secs,
              rate=s["half_grpc_rate"] / 2),
    )  # fmt: skip
    sampler.cancel()
    r.add("soak REST", "featureline", rest)
    r.add("soak gRPC", "featureline", grpc_res)
    mib = [round(x / 2**20, 1) for x in samples]
    third = max(1, len(mib) // 3)
    growth = (max(mib[-third:]) - max(mib[:third])) if mib else 0.0
    r.rows.append({"phase": "soak memory", "rss_mib": mib, "growth_mib": round(growth, 1),
                   "errors": rest.errors + grpc_res.errors})  # fmt: skip
    print(
        f"  => soak: {rest.errors + grpc_res.errors} errors; workers' RSS {mib[0] if mib else 0}"
        f" -> {mib[-1] if mib else 0} MiB (growth first->last third: {growth:+.1f} MiB)"
    )


def run_phases(w: Workload, servers: dict[str, Any], sizes: dict[str, Any], conc: int, *,
               skip_feast: bool, compare_only: bool = False) -> dict[str, Any]:  # fmt: skip
    """The phases; then, when a cluster server runs (`cluster_http` in servers), one
    Redis against the cluster (benchmarks/serve/cluster.py), and when a TLS server runs
    (`tls_http`), plaintext against TLS (benchmarks/serve/tls.py); compare_only: those alone."""
    import uvloop

    from benchmarks.serve.cluster import compare

    feast = not skip_feast
    secs = sizes["seconds"]
    report = Report()
    started = time.time()

    async def main() -> None:
        if not compare_only:
            await _batch1(w, servers, report, conc, secs, feast)
            await _batch100(w, servers, report, conc, secs, feast)
            await _batch1000(w, servers, report, secs, feast)
            await _service_batch1(w, servers, report, conc, secs)
            await _soak(w, servers, report, conc, sizes["soak_s"])
        if "cluster_http" in servers:
            await compare(w, servers, report, conc, secs)
        if "tls_http" in servers:
            from benchmarks.serve.tls import compare as compare_tls

            await compare_tls(w, servers, report, conc, secs)
        if "feature_log_ports" in servers:
            from benchmarks.serve.feature_log import compare as compare_logging

            await compare_logging(w, servers, report, conc, secs)

    print(f"featureline bench serve: {len(w.plain_refs)} plain features, service {w.service},"
          f" {conc} connections, {secs:.0f} s per phase", file=sys.stderr, flush=True)  # fmt: skip
    # The machine is shared: its load before and after says how quiet the run was.
    load_before = os.getloadavg()
    uvloop.run(main())
    load_after = os.getloadavg()
    print(f"load average (1/5/15 min) before {load_before}, after {load_after}", flush=True)
    return {"started": started, "rows": report.rows, "loadavg": [load_before, load_after]}
