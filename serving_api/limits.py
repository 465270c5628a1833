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

KiB = 1024
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

    # -- The REST port's HTTP/1.1 server (serving_api.http_server) --
    # The request target: our paths and query strings are < 200 bytes; 8 KiB is
    # nginx's default line buffer (large_client_header_buffers 8k). Longer: 414.
    http_max_request_line_bytes: int = 8 * KiB
    # The whole request head (request line + headers): a JWT with many groups is
    # 4-16 KiB; 64 KiB holds several, and bounds what a connection buffers before 431.
    http_max_header_bytes: int = 64 * KiB
    # Our clients send < 10 headers; 100 is Tomcat's and Go's order. More: 431.
    http_max_headers: int = 100
    # The head must arrive within this long of its first byte, the body within this
    # long of the head's end (a trickle of bytes does not extend either: slowloris);
    # 408 and close. A LAN client sends a 4 MiB body in < 1 s; 30 s allows ~1 Mbit/s.
    http_header_timeout_s: float = 10.0
    http_body_timeout_s: float = 30.0
    # A keep-alive connection with no request in progress is closed after this long.
    http_idle_timeout_s: float = 30.0
    # Replies of one connection the peer has not read (in our buffer, past the
    # kernel's): past this, stop reading its requests until they drain. 1 MiB is
    # ~3,000 batch-1 replies; a larger single reply is still sent whole.
    http_max_unsent_bytes: int = 1 * MiB
    # A peer that reads none of its replies for this long (or of the last reply
    # before a close) is cut off, so it cannot hold its buffers forever.
    http_send_timeout_s: float = 30.0
    # Requests parsed and queued behind a slow one on one connection: past this, stop
    # reading it (requests of one connection are answered in order).
    http_max_pipelined: int = 16
    # Connections held by one worker: an idle one costs ~1 KiB of the worker (500:
    # +0.4 MiB, tests/serving/test_hostile_http.py), a file descriptor and its kernel
    # buffers; 10,000 bounds those. Past the cap a new one gets 503 and is closed.
    http_max_connections: int = 10_000


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
