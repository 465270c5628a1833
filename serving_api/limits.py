"""Request limits and the serving errors that map onto HTTP and gRPC status codes.

Every error a caller can get is a FeaturelineError with a message for a person; the
servers turn it into a status code with `http_status` / `grpc_code` and never send a
stack trace.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from featureline.errors import (
    BadInputError,
    FeaturelineError,
    NotFoundError,
    ServiceUnavailableError,
)
from featureline.odfv import OnDemandError
from featureline.online_store import StoreTimeoutError

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Per-request and per-process limits (CLI flags of `featureline serve`)."""

    # 10,000 entities x 20 features is ~1.5 MB of JSON and ~100 ms of work: larger
    # batches should be split by the caller rather than stall other requests.
    max_entities: int = 10_000
    # A 10,000-row request with two join keys is ~300 KB of JSON; 4 MiB leaves room.
    max_body_bytes: int = 4 * MiB
    # gRPC: requests as REST; responses up to a 10,000 x 200 float32 tensor (~8 MB).
    grpc_max_receive_bytes: int = 4 * MiB
    grpc_max_send_bytes: int = 64 * MiB
    # Requests served at once by one process; beyond it callers get 429 /
    # RESOURCE_EXHAUSTED at once instead of queueing into timeouts.
    max_in_flight: int = 512
    # Budget for the Redis round trip when the caller sets no deadline.
    redis_timeout_s: float = 1.0

    # TLS (serving_api.tls). A handshake is 1-2 round trips (< 1 s on any real
    # network); asyncio's default of 60 s would let a client that never finishes one
    # hold a connection for a minute. `--tls-handshake-timeout-s`.
    tls_handshake_timeout_s: float = 10.0
    # --- JWT bearer tokens (serving_api.auth_jwt; --auth-* flags) ---
    # A verified token's access is kept under its SHA-256 until its exp, so a client
    # that reuses its token pays the signature check once; 10,000 entries (~2 MB) hold
    # every client of a busy worker, an LRU drops the longest unused beyond that.
    jwt_cache_tokens: int = 10_000
    # Larger tokens are refused unread: Azure AD tokens with ~200 groups are ~8 KiB;
    # 16 KiB bounds the JSON a caller can make us parse before any signature check.
    jwt_max_token_bytes: int = 16 * 1024
    # The key set is fetched again in the background this often, so a key the IdP
    # withdrew stops verifying within 5 minutes, for one small GET per worker.
    jwks_refresh_s: float = 300.0
    # A token with an unknown `kid` (a key rotation) fetches the key set at most this
    # often, so tokens with made-up kids cannot make every worker hammer the IdP.
    jwks_min_refresh_s: float = 30.0

    # --- feature logging (serving_api.feature_log; --feature-log-* flags) ---
    # Rows a logged service's queue holds per worker before requests' rows are dropped
    # (and counted). A queued batch-1 request keeps its served frame alive (~1.5 KB for
    # 10 features), so 20,000 rows bound the queue near 30 MB; at 10k logged req/s it is
    # 2 s of traffic, 4x the writer's trigger below. Feast's Python logger holds 10,000.
    feature_log_queue_rows: int = 20_000
    # The writer wakes when this many rows wait (a write per ~5,000 rows: ~50 ms of the
    # writer thread for batch-1 frames, files of ~0.5 MB)...
    feature_log_flush_rows: int = 5_000
    # ...or this often, so a quiet service's rows reach the offline store within 10 s
    # (Feast's Python logger writes every 30 s; fresher logs let consistency --logged
    # see a skew sooner).
    feature_log_flush_s: float = 10.0


# What a caller reads of an unexpected error; the details go to the server log only.
INTERNAL_MESSAGE = "internal server error (see the server log)"


class TooManyEntitiesError(BadInputError):
    pass


class BodyTooLargeError(BadInputError):
    pass


class OverloadedError(FeaturelineError):
    pass


class UnauthenticatedError(FeaturelineError):
    pass


class ForbiddenError(FeaturelineError):
    pass


class DeadlineExceededError(FeaturelineError):
    pass


def check_entities(n_rows: int, limits: Limits) -> None:
    if n_rows > limits.max_entities:
        raise TooManyEntitiesError(
            f"too many entities: {n_rows} rows in one request, the limit is "
            f"{limits.max_entities} (split the request, or raise --max-entities)"
        )


def body_too_large(size: int, limit: int) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"request body of {size} bytes is larger than the limit of {limit} bytes (--max-body-bytes)"
    )


class InFlight:
    """Counts requests being served; refuses beyond the limit (no queueing)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def __enter__(self) -> InFlight:
        if self.count >= self.limit:
            raise OverloadedError(
                f"server busy: {self.count} requests in flight in this process "
                f"(limit {self.limit}); retry shortly"
            )
        self.count += 1
        return self

    def __exit__(self, *exc: Any) -> None:
        self.count -= 1


# (error class, HTTP status, gRPC status code name); the first match wins.
_STATUS_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (UnauthenticatedError, 401, "UNAUTHENTICATED"),
    (ForbiddenError, 403, "PERMISSION_DENIED"),
    (NotFoundError, 404, "NOT_FOUND"),
    (BodyTooLargeError, 413, "RESOURCE_EXHAUSTED"),
    (BadInputError, 400, "INVALID_ARGUMENT"),
    (OverloadedError, 429, "RESOURCE_EXHAUSTED"),
    (DeadlineExceededError, 504, "DEADLINE_EXCEEDED"),
    (StoreTimeoutError, 504, "DEADLINE_EXCEEDED"),
    (asyncio.TimeoutError, 504, "DEADLINE_EXCEEDED"),
    (ServiceUnavailableError, 503, "UNAVAILABLE"),
    (OnDemandError, 500, "INTERNAL"),
)


def classify(exc: BaseException) -> tuple[int, str, str]:
    """(HTTP status, gRPC code name, message) of an error; unknown errors are 500 with a
    generic message (the details go to the server log, not to the caller)."""
    for cls, http, grpc_name in _STATUS_TABLE:
        if isinstance(exc, cls):
            message = str(exc) or cls.__name__
            if cls is asyncio.TimeoutError:
                message = "the request's deadline passed before Redis answered"
            return http, grpc_name, message
    return 500, "INTERNAL", INTERNAL_MESSAGE
