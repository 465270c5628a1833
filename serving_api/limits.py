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
from featureline.online_store.redis.aio import BULK_COMMANDS, MAX_ABANDONED, STALL_TIMEOUT_S

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
    # Redis connections (online_store.redis.aio): a request that times out fails alone.
    # A connection is closed (its requests fail, then it reconnects) only when Redis
    # sends nothing for the stall timeout while requests wait; 0 means max(5 s, 5 x
    # redis_timeout_s): five whole request budgets of silence, which a live Redis never
    # shows (it answers within milliseconds even loaded).
    redis_stall_timeout_s: float = 0.0
    # ... or when replies due to requests that gave up pass this many commands (~0.3 s
    # of Redis work, which every request sent behind them waits for first).
    redis_max_abandoned: int = MAX_ABANDONED
    # Reads of this many commands or more take a second connection, so that a batch-1
    # read is not queued behind a 10,000-command one (its p99 43-59 ms -> 7.5-14 ms on
    # 2 shared cores: online_store.redis.aio); 0: one connection.
    redis_bulk_commands: int = BULK_COMMANDS

    # -- gRPC port: HTTP/2 limits per connection (serving_api.grpc_h2; the aio stack
    # maps those grpcio has onto its options, serving_api.grpc_server). A peer over a
    # limit gets GOAWAY (ENHANCE_YOUR_CALM) and is closed; others keep being served.
    # A header block (HEADERS + CONTINUATION, compressed) and the decoded header list:
    # a gRPC call's headers are ~200 bytes, a bearer JWT ~1-2 KiB; 64 KiB is the
    # MAX_HEADER_LIST_SIZE we have always advertised. Checked as the block arrives.
    grpc_max_header_bytes: int = 64 * 1024
    # CONTINUATION frames in one header block: 64 KiB fits in 4 frames of 16 KiB;
    # 8 is nghttp2's default (NGHTTP2_DEFAULT_MAX_CONTINUATIONS).
    grpc_max_continuations: int = 8
    # Streams open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS): our load
    # generator keeps 4 per channel, a model server a few dozen; 100 is Go's and
    # nginx's order of magnitude (250, 128). Beyond it: RST_STREAM(REFUSED_STREAM).
    grpc_max_streams: int = 100
    # RST_STREAM frames from the peer plus streams we refused, per second (rapid reset,
    # CVE-2023-44487): a client cancels a call whose deadline passed; 500 a second on
    # one connection is a client failing most of its calls or an attack (a rapid-reset
    # flood sends ~100k/s on loopback). Each costs us a decode and a cancelled task.
    grpc_max_resets_per_s: int = 500
    # SETTINGS frames per second: a client sends one at start and a few when it grows
    # its windows (grpc's BDP probe, ~8 over a connection's life).
    grpc_max_settings_per_s: int = 100
    # PING frames per second while we send no response (pings during traffic, e.g.
    # grpc-go's BDP probe, one per burst of responses, are not counted): keepalive
    # pings come every >= 10 s; grpcio's own policy allows one per 5 min without data.
    grpc_max_pings_per_s: int = 100
    # Request bytes received but not yet handled, per connection: the connection
    # window we advertise, refilled only as requests are handled. At least one
    # request of grpc_max_receive_bytes; 16 MiB keeps one abusive connection well
    # under the hostile suite's 64 MiB of growth.
    grpc_max_buffered_bytes: int = 16 * MiB
    # Response bytes waiting for the peer's flow-control window, per connection: one
    # response of any allowed size (grpc_max_send_bytes) always fits; a second one that
    # would take the total past 16 MiB closes the connection (a batch-1000 response is
    # ~100 KB, so a reader that slow has ~160 responses it never read).
    grpc_max_pending_bytes: int = 16 * MiB
    # A connection whose responses wait and make no progress (zero window, or a peer
    # that stopped reading its socket) for this long is closed: a live client opens
    # its window within milliseconds of reading.
    grpc_stall_timeout_s: float = 30.0
    # A connection with no open stream for this long gets GOAWAY(NO_ERROR) and is
    # closed (gRPC clients reconnect on their next call, ~1 ms on a LAN); it frees a
    # descriptor and its buffers.
    grpc_idle_timeout_s: float = 300.0
    # From connect to the client's preface and first SETTINGS (one round trip for a
    # real client): a connect-and-wait flood holds each descriptor no longer than this.
    grpc_preface_timeout_s: float = 10.0
    # Connections per worker; beyond it a new one gets GOAWAY and is closed at once.
    # Under the 20,000 descriptors a worker may open here (ulimit -n), with room for
    # the REST port; a model server keeps one to a few channels per process.
    grpc_max_connections: int = 1000

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

    def redis_options(self) -> dict[str, Any]:
        """The read client's connection settings (online_store.open_reader options)."""
        stall = self.redis_stall_timeout_s or max(STALL_TIMEOUT_S, 5 * self.redis_timeout_s)
        return {
            "stall_timeout_s": stall,
            "max_abandoned": self.redis_max_abandoned,
            "bulk_commands": self.redis_bulk_commands,
        }

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
