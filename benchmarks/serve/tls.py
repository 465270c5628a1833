"""`featureline bench serve --tls`: what TLS costs `featureline serve`.

A second `featureline serve`, with the plaintext server's flags plus --tls-cert and
--tls-key (certificates made into the bench's directory by certs.py: EC P-256; both
sides negotiate TLS 1.3, AES-GCM), reads the same Redis; each phase runs plain, TLS,
TLS, plain (each --seconds long) and pools both runs of a side, as cluster.py does, so
a load that drifts during the phase hits both sides alike.

What is compared: our server against itself, plaintext and TLS, same run (Feast is not
run with TLS). The load generator keeps its connections (HTTP/1.1 keep-alive, one
HTTP/2 connection per caller, as the SDK and the workers do), so the steady phases
measure the record layer (encryption, and uvloop's SSL transport under both of our
protocols) per request; `fresh connection` opens a connection per request, so there
the handshake is in every request.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from benchmarks.loadgen.generator import HttpConnection, LoadResult
from benchmarks.serve import setup
from benchmarks.serve.certs import make_pki
from benchmarks.serve.cluster import _pooled  # the same pooling as the cluster comparison
from featureline.serving_api.tls import ALPN_HTTP, ClientTls
from featureline.settings import Settings

Measure = Callable[[int, int, ClientTls | None], Awaitable[LoadResult]]  # (http, grpc, tls)


def start_server(bench: Settings, args: Any, procs: list[Any]) -> dict[str, Any]:
    """`featureline serve` with TLS on both ports, flags otherwise as the plaintext one's."""
    from featureline.cli.devstack import free_ports

    pki = make_pki(bench.home / "tls")
    http, grpc = free_ports(2)
    proc = setup.spawn("featureline-serve-tls", [
        sys.executable, "-m", "featureline.cli", "serve", "--repo", str(bench.repo),
        "--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc),
        "--workers", str(args.workers), "--max-in-flight", "4096",
        "--near-cache-keys", str(args.near_cache_keys), "--grpc-server", args.grpc_server,
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
    ], bench)  # fmt: skip
    procs.append(proc)
    setup.wait_port(proc, "127.0.0.1", http)
    setup.wait_port(proc, "127.0.0.1", grpc)
    return {"tls_http": http, "tls_grpc": grpc, "tls_client": ClientTls(ca=str(pki.ca))}


async def _fresh_connections(port: int, body: bytes, secs: float, tls: ClientTls | None) -> LoadResult:
    """One caller: a new connection (TCP, and the TLS handshake with `tls`) per request."""
    context = tls.ssl_context(ALPN_HTTP) if tls is not None else None
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    while time.perf_counter() - started < secs:
        t0 = time.perf_counter()
        conn = HttpConnection("127.0.0.1", port, "/get-online-features", tls=context)
        try:
            errors += await conn.post(body) != 200
        except (OSError, ValueError):
            errors += 1
        conn.close()
        latencies.append(time.perf_counter() - t0)
        await asyncio.sleep(0)
    return LoadResult(len(latencies), errors, time.perf_counter() - started, np.array(latencies) * 1000)


async def compare(w: Any, s: dict[str, Any], r: Any, conc: int, secs: float) -> None:
    """Plaintext against TLS: batch 1 REST and gRPC (closed loop at --concurrency),
    batch 100 REST (concurrency 1 and --concurrency), batch 1000 tensor calls, and batch
    1 REST on a fresh connection per request; the TLS overhead of each."""
    from benchmarks.serve.phases import FEAST_GRPC_METHOD, TENSOR_METHOD, _grpc, _rest

    b1, b1g, b100 = w.rest(1), w.grpc(1), w.rest(100)
    plain, full = w.tensor(1000, False), w.tensor(1000, True)
    # (phase, figure compared, measure)
    phases: list[tuple[str, str, Measure]] = [
        ("batch 1 REST", "rps", lambda h, g, t: _rest(h, b1, conc, secs, tls=t)),
        ("batch 1 gRPC", "rps", lambda h, g, t: _grpc(g, FEAST_GRPC_METHOD, b1g, conc, secs, tls=t)),
        ("batch 100 REST c=1", "p50_ms", lambda h, g, t: _rest(h, b100, 1, secs, tls=t)),
        (f"batch 100 REST c={conc}", "rps", lambda h, g, t: _rest(h, b100, conc, secs, tls=t)),
        ("batch 1000 tensor, plain views", "p50_ms",
         lambda h, g, t: _grpc(g, TENSOR_METHOD, plain, 1, secs, raw=False, tls=t)),
        (f"batch 1000 tensor, {w.service}", "p50_ms",
         lambda h, g, t: _grpc(g, TENSOR_METHOD, full, 1, secs, raw=False, tls=t)),
        ("batch 1 REST, fresh connection", "p50_ms",
         lambda h, g, t: _fresh_connections(h, b1[0], secs, t)),
    ]  # fmt: skip
    print("plaintext vs TLS, same server flags (runs plain, tls, tls, plain; pooled):", flush=True)
    sides = {"plain": (s["ours_http"], s["ours_grpc"], None),
             "tls": (s["tls_http"], s["tls_grpc"], s["tls_client"])}  # fmt: skip
    for phase, figure, measure in phases:
        runs: dict[str, list[LoadResult]] = {"plain": [], "tls": []}
        for side in ("plain", "tls", "tls", "plain"):
            runs[side].append(await measure(*sides[side]))
        clear = r.add(phase, "fl-plain", _pooled(*runs["plain"]))
        tls = r.add(phase, "fl-tls", _pooled(*runs["tls"]))
        _overhead(r, phase, figure, clear[figure], tls[figure])


def _overhead(r: Any, phase: str, figure: str, clear: float, tls: float) -> None:
    if not clear or not tls:
        return
    cost = tls / clear - 1 if figure == "p50_ms" else clear / tls - 1
    what = (
        f"p50 ({(tls - clear) * 1000:+.0f} us a request)"
        if figure == "p50_ms"
        else "time per request (from req/s)"
    )
    r.rows.append({"phase": f"{phase}: TLS overhead", "figure": figure, "overhead": round(cost, 3)})
    print(f"  => {phase}: TLS {cost:+.0%} {what}", flush=True)


__all__ = ["compare", "start_server"]
