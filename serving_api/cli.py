"""`featureline serve`: the REST and gRPC serving API, in N worker processes.

Only argparse is imported at module level (`featureline serve --help` must answer in
well under a second); `run` loads the repo's specs once (feast only when the spec
cache is stale), writes them to a JSON file, and starts the workers.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError, ServiceUnavailableError
from featureline.serving_api.serve_flags import (
    add_grpc_limit_flags,
    configure_feature_log,
    configure_jwt,
    configure_tls,
    grpc_limits,
    http_limit_flags,
    http_limits,
    jwks_refresh_s,
    jwt_settings,
)
from featureline.settings import Settings

# A worker that dies within this long after its start is not restarted (a startup
# error would otherwise loop); later deaths are restarted after a 1 s pause.
_MIN_UPTIME_S = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument(
        "--http-port", type=int, default=None, help="REST port (default $FEATURELINE_HTTP_PORT, 8080)"
    )
    parser.add_argument(
        "--grpc-port", type=int, default=None, help="gRPC port (default $FEATURELINE_GRPC_PORT, 6566)"
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes sharing both ports (default 1)"
    )
    parser.add_argument(
        "--auth-tokens",
        default=os.environ.get("FEATURELINE_AUTH_TOKENS_FILE", ""),
        metavar="FILE",
        help="bearer tokens file (lines: TOKEN ACCESS); default $FEATURELINE_AUTH_TOKENS_FILE, or "
        "none (auth off unless OIDC/JWT auth is on, below)",
    )
    parser.add_argument(
        "--max-entities", type=int, default=10_000, help="entities per request (default 10000)"
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=4 * 1024 * 1024,
        help="REST body and gRPC message size limit (default 4 MiB)",
    )
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=512,
        help="requests served at once per worker before 429/RESOURCE_EXHAUSTED (default 512)",
    )
    parser.add_argument(
        "--redis-timeout-ms",
        type=float,
        default=1000.0,
        help="Redis budget of a request without a deadline (default 1000 ms)",
    )
    parser.add_argument(
        "--redis-stall-timeout-ms",
        type=float,
        default=0.0,
        help="close a Redis connection that sends nothing this long while requests wait, "
        "failing them, then reconnect (default 0: max(5000, 5 x --redis-timeout-ms))",
    )
    parser.add_argument(
        "--redis-max-abandoned",
        type=int,
        default=100_000,
        metavar="N",
        help="close a Redis connection when the replies still due to timed-out requests "
        "pass N commands (default 100000)",
    )
    parser.add_argument(
        "--redis-bulk-commands",
        type=int,
        default=1000,
        metavar="N",
        help="reads of N Redis commands or more go on a second connection, so small reads "
        "are not queued behind them (default 1000; 0: one connection)",
    )
    parser.add_argument(
        "--near-cache-keys",
        type=int,
        default=0,
        metavar="N",
        help="keep up to N Redis keys' replies in each worker, invalidated by Redis "
        "(CLIENT TRACKING); a write may be served stale until its invalidation arrives, "
        "typically < 1 ms (default 0: off)",
    )
    parser.add_argument(
        "--grpc-server",
        choices=["native", "aio"],
        default=None,
        help="what serves the gRPC port: our HTTP/2 server in each worker's event loop "
        "(native: cheaper per call), or grpcio's (aio: HTTP/2 on grpcio's own thread) "
        "(default $FEATURELINE_GRPC_SERVER or native)",
    )
    parser.add_argument("--log-level", default="warning", choices=["debug", "info", "warning"])
    configure_tls(parser)
    configure_jwt(parser)
    add_grpc_limit_flags(parser)
    http_limit_flags(parser)
    configure_feature_log(parser)


def _check_port(host: str, port: int, what: str) -> None:
    """Fail early with a clear message when another process holds the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServiceUnavailableError(
                f"the {what} port {host}:{port} is in use ({exc.strerror}); pick another "
                f"with --{what.lower()}-port"
            ) from None


def online_store(settings: Settings) -> Any:
    """The resolved Redis. A login or TLS error stops serve here, in one line; a Redis
    that does not answer yet does not (the workers answer UNAVAILABLE until it does)."""
    from featureline.config import online_store as resolve_online
    from featureline.online_store import open_store

    cfg = resolve_online(settings)
    try:
        open_store(cfg, timeout_s=2.0).close()
    except ServiceUnavailableError as exc:
        print(f"warning: {exc}", file=sys.stderr)
    return cfg


def build_config(args: Any, settings: Settings) -> Any:
    from featureline.odfv import OnDemandRunner
    from featureline.repo import load_repo
    from featureline.serving_api.auth_setup import load_auth
    from featureline.serving_api.feast_auth import describe, read_feast_oidc
    from featureline.serving_api.limits import Limits
    from featureline.serving_api.server import WorkerConfig
    from featureline.slo import freshness_slos

    if args.workers < 1:
        raise BadInputError("--workers must be at least 1")
    if min(args.redis_stall_timeout_ms, args.redis_max_abandoned, args.redis_bulk_commands) < 0:
        raise BadInputError(
            "--redis-stall-timeout-ms, --redis-max-abandoned and --redis-bulk-commands must be >= 0"
        )
    if args.near_cache_keys < 0:
        raise BadInputError("--near-cache-keys must be >= 0 (0: off)")
    if (args.grpc_server or settings.grpc_server) not in ("native", "aio"):
        raise BadInputError(f"FEATURELINE_GRPC_SERVER must be native or aio, not {settings.grpc_server!r}")
    tls = _tls(args)
    oidc = read_feast_oidc(settings.repo)  # its discovery document: read now, or stop here
    repo = load_repo(settings)
    freshness_slos(repo)  # a bad freshness_slo tag stops serve here, naming the view
    redis = online_store(settings)
    for odfv in repo.on_demand_views.values():
        OnDemandRunner.build(odfv)  # a udf that cannot run stops us here, with its name
    spec_dir = settings.home.resolve() / "serving"
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec_path = spec_dir / f"specs-{repo.source_fingerprint or os.getpid()}.json"
    spec_path.write_text(repo.to_json())
    limits = Limits(
        max_entities=args.max_entities,
        max_body_bytes=args.max_body_bytes,
        grpc_max_receive_bytes=args.max_body_bytes,
        max_in_flight=args.max_in_flight,
        redis_timeout_s=args.redis_timeout_ms / 1000,
        tls_handshake_timeout_s=args.tls_handshake_timeout_s,
        # --- JWT bearer tokens ---
        jwt_cache_tokens=args.auth_cache_tokens,
        jwt_max_token_bytes=args.auth_max_token_bytes,
        jwks_refresh_s=jwks_refresh_s(args, oidc),
        jwks_min_refresh_s=args.auth_jwks_min_refresh_s,
        redis_stall_timeout_s=args.redis_stall_timeout_ms / 1000,
        redis_max_abandoned=args.redis_max_abandoned,
        redis_bulk_commands=args.redis_bulk_commands,
        **grpc_limits(args),
        **http_limits(args),
        # --- feature logging ---
        feature_log_queue_rows=args.feature_log_queue_rows,
        feature_log_flush_rows=args.feature_log_flush_rows,
        feature_log_flush_s=args.feature_log_flush_s,
    )
    check_feature_log(repo, limits, args.feature_log_sample_rate)
    jwt = jwt_settings(args, oidc, repo.permissions)
    if oidc is not None:
        describe(jwt, oidc, repo.permissions)
    load_auth(args.auth_tokens, jwt, limits)  # a bad tokens file, claim map or JWKS stops us here
    return WorkerConfig(
        spec_path=str(spec_path),
        redis=redis,
        host=args.host,
        http_port=settings.http_port,
        grpc_port=settings.grpc_port,
        limits=limits,
        tokens_file=str(Path(args.auth_tokens).resolve()) if args.auth_tokens else "",
        log_level=args.log_level,
        near_cache_keys=args.near_cache_keys,
        grpc_server=args.grpc_server or settings.grpc_server,
        tls=tls,
        jwt=jwt,
        feature_log_sample_rate=args.feature_log_sample_rate,
    ), repo


def check_feature_log(repo: Any, limits: Any, sample_rate: float | None) -> None:
    """Bad feature-logging settings stop serve here; one line per logged service, and
    per service whose logging destination is not supported."""
    from featureline.serving_api.feature_log import FeatureLogger, LogSettings

    settings = LogSettings(
        limits.feature_log_queue_rows, limits.feature_log_flush_rows, limits.feature_log_flush_s, sample_rate
    )
    logger = FeatureLogger.for_repo(repo, settings)
    for name, target in sorted((logger.services if logger else {}).items()):
        rate = f"{target.rate:.2%} of requests"
        print(f"feature logging: {name} -> {target.spec.path} ({rate})", file=sys.stderr)
    for ignored in repo.ignored:
        if ignored.kind == "feature service logging_config":
            print(f"feature logging: {ignored.name} not logged: {ignored.why}", file=sys.stderr)


def _tls(args: Any) -> Any:
    """The TLS files, checked here: a bad file stops serve in one line, before any worker."""
    from featureline.serving_api.tls import ServerTls

    if args.tls_handshake_timeout_s <= 0:
        raise BadInputError("--tls-handshake-timeout-s must be > 0")
    paths = [str(Path(p).resolve()) if p else "" for p in (args.tls_cert, args.tls_key, args.tls_client_ca)]
    tls = ServerTls(*paths)
    tls.check()
    return tls


def _supervise(config: Any, workers: int) -> int:
    """Run `workers` processes; restart one that dies after a healthy start."""
    import multiprocessing

    from featureline.serving_api.server import run_worker

    # Every worker writes its metrics to files here, so /metrics sums all workers.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="featureline-metrics-")
    ctx = multiprocessing.get_context("spawn")  # no fork after grpc/uvloop imports
    procs: dict[int, tuple[Any, float]] = {}

    def start(slot: int) -> None:
        proc = ctx.Process(target=run_worker, args=(config,), name=f"serve-worker-{slot}")
        proc.start()
        procs[slot] = (proc, time.monotonic())

    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(workers):
        start(slot)
    code = 0
    while not stopping:
        time.sleep(0.2)
        for slot, (proc, started) in list(procs.items()):
            if proc.is_alive() or stopping:
                continue
            if time.monotonic() - started < _MIN_UPTIME_S:
                print(f"error: worker {slot} exited at startup ({proc.exitcode})", file=sys.stderr)
                stopping, code = True, 3
                break
            print(f"worker {slot} exited ({proc.exitcode}); restarting", file=sys.stderr)
            start(slot)
    for proc, _ in procs.values():
        if proc.is_alive():
            proc.terminate()
    for proc, _ in procs.values():
        proc.join(5)
        if proc.is_alive():
            proc.kill()
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
    return code


def run(args: Any, settings: Settings) -> int:
    settings = settings.with_flags(
        http_port=(args.http_port, "--http-port"), grpc_port=(args.grpc_port, "--grpc-port")
    )
    _check_port(args.host, settings.http_port, "HTTP")
    _check_port(args.host, settings.grpc_port, "gRPC")
    config, repo = build_config(args, settings)
    scheme = "https" if config.tls.enabled else "http"
    tls = ("mutual TLS" if config.tls.mutual else "TLS") if config.tls.enabled else "plaintext"
    print(
        f"featureline serve: REST {scheme}://{args.host}:{settings.http_port} (docs at /docs), "
        f"gRPC {args.host}:{settings.grpc_port} ({tls}), {args.workers} worker(s), "
        f"Redis {config.redis.address} db {config.redis.db}, project {repo.project}, "
        f"auth {'+'.join(k for k, on in (('tokens', args.auth_tokens), ('jwt', config.jwt)) if on) or 'off'}",
        file=sys.stderr,
        flush=True,
    )
    # Workers run in child processes even when there is one: this process may have
    # imported feast to read the repo (~200 MB), the workers never do.
    return _supervise(config, args.workers)
