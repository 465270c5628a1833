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
        help="bearer tokens file (lines: TOKEN ACCESS); default: no auth, or $FEATURELINE_AUTH_TOKENS_FILE",
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
    _http_limit_flags(parser)


# The REST port's limits: each flag's dest is its serving_api.limits.Limits field, where
# the default is explained (repeated here so `serve --help` imports nothing; a test
# checks that they agree). (flag, type, default, help)
_HTTP_LIMITS: tuple[tuple[str, type, float, str], ...] = (
    ("--http-max-request-line-bytes", int, 8192, "request target; longer: 414"),
    ("--http-max-header-bytes", int, 65536, "request line + headers; larger: 431"),
    ("--http-max-headers", int, 100, "headers per request; more: 431"),
    ("--http-header-timeout-s", float, 10.0,
     "the request head must arrive within this of its first byte, or 408"),
    ("--http-body-timeout-s", float, 30.0, "the body must arrive within this of the head's end, or 408"),
    ("--http-idle-timeout-s", float, 30.0, "idle keep-alive connections are closed after this"),
    ("--http-max-unsent-bytes", int, 1024 * 1024,
     "replies a client has not read, per connection, before its requests stop being read"),
    ("--http-send-timeout-s", float, 30.0,
     "a client that reads none of its replies for this long is cut off"),
    ("--http-max-pipelined", int, 16, "requests queued on one connection before it stops being read"),
    ("--http-max-connections", int, 10_000, "REST connections per worker; more get 503"),
)  # fmt: skip


def _http_limit_flags(parser: argparse.ArgumentParser) -> None:
    for flag, kind, default, text in _HTTP_LIMITS:
        shown = f"{default:g} s" if kind is float else str(default)
        parser.add_argument(flag, type=kind, default=default, help=f"{text} (default {shown})")


def http_limits(args: Any) -> dict[str, Any]:
    """The REST limits given as flags, by Limits field; each must be positive."""
    values = {}
    for flag, _, _, _ in _HTTP_LIMITS:
        name = flag.removeprefix("--").replace("-", "_")
        values[name] = getattr(args, name)
        if values[name] <= 0:
            raise BadInputError(f"{flag} must be > 0, not {values[name]:g}")
    return values


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
    from featureline.serving_api.auth import TokenAuth
    from featureline.serving_api.limits import Limits
    from featureline.serving_api.server import WorkerConfig

    if args.workers < 1:
        raise BadInputError("--workers must be at least 1")
    if args.near_cache_keys < 0:
        raise BadInputError("--near-cache-keys must be >= 0 (0: off)")
    if (args.grpc_server or settings.grpc_server) not in ("native", "aio"):
        raise BadInputError(f"FEATURELINE_GRPC_SERVER must be native or aio, not {settings.grpc_server!r}")
    repo = load_repo(settings)
    redis = online_store(settings)
    for odfv in repo.on_demand_views.values():
        OnDemandRunner.build(odfv)  # a udf that cannot run stops us here, with its name
    if args.auth_tokens:
        TokenAuth.from_file(args.auth_tokens)
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
        **http_limits(args),
    )
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
    ), repo


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
    print(
        f"featureline serve: REST http://{args.host}:{settings.http_port} (docs at /docs), "
        f"gRPC {args.host}:{settings.grpc_port}, {args.workers} worker(s), "
        f"Redis {config.redis.address} db {config.redis.db}, project {repo.project}, "
        f"auth {'on' if args.auth_tokens else 'off'}",
        file=sys.stderr,
        flush=True,
    )
    # Workers run in child processes even when there is one: this process may have
    # imported feast to read the repo (~200 MB), the workers never do.
    return _supervise(config, args.workers)
