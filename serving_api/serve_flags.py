"""`featureline serve`'s flags beyond the basics, one block per concern: TLS
(serving_api.tls), OIDC/JWT auth (serving_api.auth_jwt), and the limits of the gRPC
and REST ports (serving_api.limits: each flag's dest is its Limits field). Only
argparse-level code: `featureline serve --help` imports nothing else."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from featureline.errors import BadInputError


def configure_tls(parser: argparse.ArgumentParser) -> None:
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
    jwt = parser.add_argument_group(
        "OIDC/JWT bearer tokens",
        "on with --auth-jwks, or with feature_store.yaml's Feast `auth: {type: oidc, "
        "auth_discovery_url, client_id}` (the discovery document's jwks_uri; roles from "
        "resource_access.<client_id>.roles and roles; access from the repo's Feast "
        "Permissions with READ_ONLINE); each flag or variable set here overrides the yaml; "
        "auth type kubernetes is refused. Works alongside --auth-tokens",
    )
    jwt.add_argument(
        "--auth-jwks",
        default=env("FEATURELINE_AUTH_JWKS", ""),
        metavar="FILE_OR_URL",
        help="the IdP's key set (a JWKS file or http(s) URL) ($FEATURELINE_AUTH_JWKS; default "
        "with yaml oidc: the discovery document's jwks_uri)",
    )
    jwt.add_argument(
        "--auth-issuer",
        default=env("FEATURELINE_AUTH_ISSUER", ""),
        help="the `iss` every token must have (required with --auth-jwks; yaml oidc: its "
        "`issuer`, unchecked if unset, as Feast)",
    )
    jwt.add_argument(
        "--auth-audience",
        default=env("FEATURELINE_AUTH_AUDIENCE", ""),
        help="the `aud` a token must hold, comma-separated if several may (required; yaml "
        "oidc: its `audience`, unchecked if unset)",
    )
    jwt.add_argument(
        "--auth-claim",
        default=env("FEATURELINE_AUTH_CLAIM", ""),
        help="the claim mapped to access: scope (also reads scp), groups, roles, a "
        "dotted path such as realm_access.roles (default scope; yaml oidc: Feast's roles)",
    )
    jwt.add_argument(
        "--auth-claim-map",
        default=env("FEATURELINE_AUTH_CLAIM_MAP", ""),
        metavar="FILE",
        help="lines `CLAIM_VALUE ACCESS` (ACCESS: * or comma-separated feature services "
        "/ views), as the tokens file (required with --auth-jwks; with yaml oidc it "
        "replaces the Feast Permissions)",
    )
    jwt.add_argument(
        "--auth-leeway-s",
        type=float,
        default=env("FEATURELINE_AUTH_LEEWAY_S"),
        help="clock difference allowed on exp / nbf / iat (default 60; yaml oidc: 10, as Feast)",
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
        default=None,
        help="fetch the key set again in the background this often (default 300, or "
        "feature_store.yaml's auth.jwks_cache_lifespan_seconds)",
    )
    jwt.add_argument(
        "--auth-jwks-min-refresh-s",
        type=float,
        default=30.0,
        help="on a token with an unknown kid, fetch the key set at most this often (default 30)",
    )


def _algorithms(text: str) -> dict[str, Any]:
    from featureline.serving_api.auth_jwt import ASYMMETRIC

    if not text:
        return {}
    algorithms = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = sorted(set(algorithms) - ASYMMETRIC)
    if bad or not algorithms:
        raise BadInputError(f"--auth-algorithms: {bad} not allowed; choose of {sorted(ASYMMETRIC)}")
    return {"algorithms": algorithms}


def jwks_refresh_s(args: Any, oidc: Any = None) -> float:
    """--auth-jwks-refresh-s, else feature_store.yaml's jwks_cache_lifespan_seconds, else 300 s."""
    if args.auth_jwks_refresh_s is not None:
        return float(args.auth_jwks_refresh_s)
    return float(oidc.jwks_lifespan_s) if oidc is not None else 300.0


def jwt_settings(args: Any, oidc: Any = None, permissions: tuple[Any, ...] = ()) -> Any:
    """The JwtSettings of the flags (None: no --auth-jwks and no `oidc`); BadInputError
    on a bad one. `oidc`: feature_store.yaml's `auth: oidc` (serving_api.feast_auth),
    whose every value a flag (or its variable) that is set overrides."""
    from featureline.serving_api.auth import JwtSettings

    if not (args.auth_jwks or oidc):
        return None
    if oidc is None and not (args.auth_issuer and args.auth_audience and args.auth_claim_map):
        raise BadInputError("--auth-jwks needs --auth-issuer, --auth-audience and --auth-claim-map")
    if oidc is not None and args.auth_claim and not args.auth_claim_map:
        raise BadInputError("--auth-claim needs --auth-claim-map (without, access is the Feast Permissions')")
    leeway = args.auth_leeway_s
    if leeway is None:
        leeway = 10.0 if oidc is not None else 60.0  # Feast's OidcTokenParser: leeway=10
    refresh = args.auth_jwks_refresh_s
    if leeway < 0 or args.auth_jwks_min_refresh_s <= 0 or (refresh is not None and refresh <= 0):
        raise BadInputError("--auth-leeway-s must be >= 0, the --auth-jwks-*refresh-s > 0")
    if args.auth_cache_tokens < 0 or args.auth_max_token_bytes < 1:
        raise BadInputError("--auth-cache-tokens must be >= 0, --auth-max-token-bytes >= 1")
    jwks = args.auth_jwks or oidc.jwks_uri
    if not jwks.startswith(("http://", "https://")):
        jwks = str(Path(jwks).resolve())
    audience = args.auth_audience or (oidc.audience if oidc is not None else "")
    settings = JwtSettings(
        jwks=jwks,
        issuer=args.auth_issuer or (oidc.issuer if oidc is not None else ""),
        audience=tuple(a.strip() for a in audience.split(",") if a.strip()),
        claim_map=str(Path(args.auth_claim_map).resolve()) if args.auth_claim_map else "",
        claim=args.auth_claim or ("" if oidc is not None else "scope"),
        leeway_s=leeway,
        **_algorithms(args.auth_algorithms),
    )
    if oidc is None:
        return settings
    from featureline.serving_api.feast_auth import apply_oidc

    return apply_oidc(settings, oidc, permissions)


# The gRPC port's HTTP/2 limits: (flag, Limits field, type, default, help). Defaults are
# Limits' own (why each: serving_api/limits.py; tests/serving/test_grpc_h2.py checks
# they agree), repeated here so that `serve --help` needs no import beyond argparse.
GRPC_LIMIT_FLAGS: tuple[tuple[str, str, type, float, str], ...] = (
    ("--grpc-max-header-bytes", "grpc_max_header_bytes", int, 65536,
     "header block of a call, compressed and decoded (bytes)"),
    ("--grpc-max-continuations", "grpc_max_continuations", int, 8, "CONTINUATION frames per header block"),
    ("--grpc-max-streams", "grpc_max_streams", int, 100, "streams open at once per connection"),
    ("--grpc-max-resets-per-s", "grpc_max_resets_per_s", int, 500,
     "stream resets (and refused streams) per second per connection (rapid reset)"),
    ("--grpc-max-settings-per-s", "grpc_max_settings_per_s", int, 100, "SETTINGS frames per second"),
    ("--grpc-max-pings-per-s", "grpc_max_pings_per_s", int, 100,
     "PINGs per second while no call is answered"),
    ("--grpc-max-buffered-bytes", "grpc_max_buffered_bytes", int, 16 * 1024 * 1024,
     "request bytes received and not yet handled per connection (its flow-control window)"),
    ("--grpc-max-pending-bytes", "grpc_max_pending_bytes", int, 16 * 1024 * 1024,
     "response bytes waiting for the peer's window per connection"),
    ("--grpc-stall-timeout-s", "grpc_stall_timeout_s", float, 30.0,
     "close a connection whose responses make no progress this long"),
    ("--grpc-idle-timeout-s", "grpc_idle_timeout_s", float, 300.0,
     "close a connection without calls this long"),
    ("--grpc-preface-timeout-s", "grpc_preface_timeout_s", float, 10.0,
     "close a connection without its HTTP/2 preface and SETTINGS this long after connect"),
    ("--grpc-max-connections", "grpc_max_connections", int, 1000, "gRPC connections per worker"),
)  # fmt: skip


def add_grpc_limit_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "gRPC port limits", "per connection unless said; over a limit the connection gets GOAWAY and is "
        "closed (--grpc-server aio: the ones grpcio has, see serving_api/grpc_server.py)",
    )  # fmt: skip
    for flag, field, kind, default, text in GRPC_LIMIT_FLAGS:
        metavar = "S" if kind is float else "N"
        group.add_argument(flag, dest=field, type=kind, default=default, metavar=metavar,
                           help=f"{text} (default {default})")  # fmt: skip


def grpc_limits(args: Any) -> dict[str, Any]:
    """The Limits fields of the gRPC limit flags; each must be positive."""
    values = {field: getattr(args, field) for _, field, _, _, _ in GRPC_LIMIT_FLAGS}
    for flag, field, *_ in GRPC_LIMIT_FLAGS:
        if values[field] <= 0:
            raise BadInputError(f"{flag} must be > 0, not {values[field]}")
    return values


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


def http_limit_flags(parser: argparse.ArgumentParser) -> None:
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


def configure_feature_log(parser: argparse.ArgumentParser) -> None:
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
