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
    _configure_tls(parser)
    configure_jwt(parser)
    _configure_feature_log(parser)


def _configure_feature_log(parser: argparse.ArgumentParser) -> None:
    """Feature logging (serving_api.feature_log): a block of its own."""
    group = parser.add_argument_group("feature logging (feature services with a Feast logging_config)")
    group.add_argument(
        "--feature-log-sample-rate",
        type=float,
        default=None,
        metavar="R",
        help="log this share of requests of every logged service, 0 to 1 (default: each "
        "service's own sample_rate; 0: logging off)",
    )
    group.add_argument(
        "--feature-log-queue-rows",
        type=int,
        default=20_000,
        help="rows waiting per logged service and worker before rows are dropped and counted (default 20000)",
    )
    group.add_argument(
        "--feature-log-flush-rows",
        type=int,
        default=5_000,
        help="write the log once this many rows wait (default 5000)",
    )
    group.add_argument(
        "--feature-log-flush-s",
        type=float,
        default=10.0,
        help="write the log at least this often, in seconds (default 10)",
    )


def _configure_tls(parser: argparse.ArgumentParser) -> None:
    """TLS on both ports (serving_api.tls): a block of its own."""
    env = os.environ.get
    parser.add_argument(
        "--tls-cert",
        default=env("FEATURELINE_TLS_CERT", ""),
        metavar="FILE",
        help="PEM server certificate (+ intermediates): both ports speak TLS >= 1.2, ALPN h2 on "
        "gRPC (default $FEATURELINE_TLS_CERT; none: plaintext)",
    )
    parser.add_argument(
        "--tls-key",
        default=env("FEATURELINE_TLS_KEY", ""),
        metavar="FILE",
        help="PEM private key of --tls-cert (default $FEATURELINE_TLS_KEY)",
    )
    parser.add_argument(
        "--tls-client-ca",
        default=env("FEATURELINE_TLS_CLIENT_CA", ""),
        metavar="FILE",
        help="PEM CA of client certificates: mutual TLS, a client without a certificate it "
        "signed is refused on both ports (default $FEATURELINE_TLS_CLIENT_CA; none: no client "
        "certificates)",
    )
    parser.add_argument(
        "--tls-handshake-timeout-s",
        type=float,
        default=10.0,
        help="close a connection whose TLS handshake takes longer (default 10 s)",
    )


def configure_jwt(parser: argparse.ArgumentParser) -> None:
    """The OIDC/JWT flags (serving_api.auth_jwt); each defaults to its environment variable."""
    env = os.environ.get
    jwt = parser.add_argument_group("OIDC/JWT bearer tokens (on with --auth-jwks; with --auth-tokens too)")
    jwt.add_argument(
        "--auth-jwks",
        default=env("FEATURELINE_AUTH_JWKS", ""),
        metavar="FILE_OR_URL",
        help="the IdP's key set (a JWKS file or http(s) URL) ($FEATURELINE_AUTH_JWKS)",
    )
    jwt.add_argument(
        "--auth-issuer",
        default=env("FEATURELINE_AUTH_ISSUER", ""),
        help="the `iss` every token must have (required with --auth-jwks)",
    )
    jwt.add_argument(
        "--auth-audience",
        default=env("FEATURELINE_AUTH_AUDIENCE", ""),
        help="the `aud` a token must hold, comma-separated if several may (required)",
    )
    jwt.add_argument(
        "--auth-claim",
        default=env("FEATURELINE_AUTH_CLAIM", "scope"),
        help="the claim mapped to access: scope (also reads scp), groups, roles, a "
        "dotted path such as realm_access.roles (default scope)",
    )
    jwt.add_argument(
        "--auth-claim-map",
        default=env("FEATURELINE_AUTH_CLAIM_MAP", ""),
        metavar="FILE",
        help="lines `CLAIM_VALUE ACCESS` (ACCESS: * or comma-separated feature services "
        "/ views), as the tokens file (required with --auth-jwks)",
    )
    jwt.add_argument(
        "--auth-leeway-s",
        type=float,
        default=env("FEATURELINE_AUTH_LEEWAY_S", "60"),
        help="clock difference allowed on exp / nbf / iat (default 60)",
    )
    jwt.add_argument(
        "--auth-algorithms",
        default=env("FEATURELINE_AUTH_ALGORITHMS", ""),
        help="allowed token algorithms, comma-separated; asymmetric only, never "
        "none or HS* (default RS*, PS*, ES*, EdDSA)",
    )
    jwt.add_argument(
        "--auth-cache-tokens",
        type=int,
        default=10_000,
        metavar="N",
        help="verified tokens kept (by digest, until exp) per worker (default 10000; 0: off)",
    )
    jwt.add_argument(
        "--auth-max-token-bytes",
        type=int,
        default=16 * 1024,
        help="larger bearer tokens get 401 unread (default 16384)",
    )
    jwt.add_argument(
        "--auth-jwks-refresh-s",
        type=float,
        default=300.0,
        help="fetch the key set again in the background this often (default 300)",
    )
    jwt.add_argument(
        "--auth-jwks-min-refresh-s",
        type=float,
        default=30.0,
        help="on a token with an unknown kid, fetch the key set at most this often (default 30)",
    )


def jwt_settings(args: Any) -> Any:
    """The JwtSettings of the flags (None: no --auth-jwks); BadInputError on a bad one."""
    from featureline.serving_api.auth import JwtSettings
    from featureline.serving_api.auth_jwt import ASYMMETRIC

    if not args.auth_jwks:
        return None
    if not (args.auth_issuer and args.auth_audience and args.auth_claim_map):
        raise BadInputError("--auth-jwks needs --auth-issuer, --auth-audience and --auth-claim-map")
    if args.auth_leeway_s < 0 or args.auth_jwks_min_refresh_s <= 0 or args.auth_jwks_refresh_s <= 0:
        raise BadInputError("--auth-leeway-s must be >= 0, the --auth-jwks-*refresh-s > 0")
    if args.auth_cache_tokens < 0 or args.auth_max_token_bytes < 1:
        raise BadInputError("--auth-cache-tokens must be >= 0, --auth-max-token-bytes >= 1")
    jwks = args.auth_jwks
    if not jwks.startswith(("http://", "https://")):
        jwks = str(Path(jwks).resolve())
    extra = {}
    if args.auth_algorithms:
        algorithms = tuple(a.strip() for a in args.auth_algorithms.split(",") if a.strip())
        bad = sorted(set(algorithms) - ASYMMETRIC)
        if bad or not algorithms:
            raise BadInputError(f"--auth-algorithms: {bad} not allowed; choose of {sorted(ASYMMETRIC)}")
        extra["algorithms"] = algorithms
    return JwtSettings(
        jwks=jwks,
        issuer=args.auth_issuer,
        audience=tuple(a.strip() for a in args.auth_audience.split(",") if a.strip()),
        claim_map=str(Path(args.auth_claim_map).resolve()),
        claim=args.auth_claim,
        leeway_s=args.auth_leeway_s,
        **extra,
    )


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
    from featureline.serving_api.limits import Limits
    from featureline.serving_api.server import WorkerConfig
    from featureline.slo import freshness_slos

    if args.workers < 1:
        raise BadInputError("--workers must be at least 1")
    if args.near_cache_keys < 0:
        raise BadInputError("--near-cache-keys must be >= 0 (0: off)")
    if (args.grpc_server or settings.grpc_server) not in ("native", "aio"):
        raise BadInputError(f"FEATURELINE_GRPC_SERVER must be native or aio, not {settings.grpc_server!r}")
    tls = _tls(args)
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
        jwks_refresh_s=args.auth_jwks_refresh_s,
        jwks_min_refresh_s=args.auth_jwks_min_refresh_s,
        # --- feature logging ---
        feature_log_queue_rows=args.feature_log_queue_rows,
        feature_log_flush_rows=args.feature_log_flush_rows,
        feature_log_flush_s=args.feature_log_flush_s,
    )
    check_feature_log(repo, limits, args.feature_log_sample_rate)
    jwt = jwt_settings(args)
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
