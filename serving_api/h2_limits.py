"""The HTTP/2 gRPC server's limits that involve time (serving_api.grpc_h2): frame rates
counted in one-second windows, and a sweep that closes connections that sent no
preface, idled, stalled, or did not finish closing.

Time is the event loop's clock, read only when a counted frame arrives (RST_STREAM,
SETTINGS, PING: never DATA or HEADERS) and once per sweep. Under uvloop `loop.time()`
is libuv's cached time of the current loop iteration: no system call. The sweep runs
a few times a second over all connections (~0.2 ms for 1,000 connections), so the
request path keeps no timestamps at all: a connection's age, idleness and stall are
judged from counters it already keeps, compared between two sweeps.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from featureline.serving_api import h2_wire as w
from featureline.serving_api.limits import Limits

# A connection told to close whose transport still holds unsent bytes (a peer that
# stopped reading) is aborted after this long, dropping them.
CLOSE_GRACE_S = 1.0


class FrameRates:
    """RST_STREAM frames (and streams we refused), SETTINGS and PING frames of one
    connection in the current one-second window; over a limit -> ConnectionFailure
    with ENHANCE_YOUR_CALM (the connection gets GOAWAY and is closed)."""

    __slots__ = ("limits", "start", "resets", "settings", "pings")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.start = -1e9
        self.resets = 0
        self.settings = 0
        # PINGs since our last response (the connection sets it to 0 on each one):
        # pings during traffic are how clients measure bandwidth (BDP), not abuse.
        self.pings = 0

    def _window(self, now: float) -> None:
        if now - self.start >= 1.0:
            self.start = now
            self.resets = self.settings = self.pings = 0

    def reset(self, now: float) -> None:
        self._window(now)
        self.resets += 1
        if self.resets > self.limits.grpc_max_resets_per_s:
            raise w.ConnectionFailure(
                w.ENHANCE_YOUR_CALM,
                f"more than {self.limits.grpc_max_resets_per_s} stream resets in a second "
                "(--grpc-max-resets-per-s)",
            )

    def setting(self, now: float) -> None:
        self._window(now)
        self.settings += 1
        if self.settings > self.limits.grpc_max_settings_per_s:
            raise w.ConnectionFailure(
                w.ENHANCE_YOUR_CALM,
                f"more than {self.limits.grpc_max_settings_per_s} SETTINGS frames in a second "
                "(--grpc-max-settings-per-s)",
            )

    def ping(self, now: float) -> None:
        self._window(now)
        self.pings += 1
        if self.pings > self.limits.grpc_max_pings_per_s:
            raise w.ConnectionFailure(
                w.ENHANCE_YOUR_CALM,
                f"more than {self.limits.grpc_max_pings_per_s} PINGs in a second without a "
                "call answered (--grpc-max-pings-per-s)",
            )


class Watch:
    """What the sweep remembers of one connection between two passes (-1: not set)."""

    __slots__ = ("opened_at", "idle_since", "idle_mark", "stall_since", "stall_mark", "closing_since")

    def __init__(self, now: float) -> None:
        self.opened_at = now
        self.idle_since = -1.0
        self.idle_mark = -1  # streams opened when the idle period began
        self.stall_since = -1.0
        self.stall_mark = -1  # progress count when the stall began
        self.closing_since = -1.0


class Swept(Protocol):
    """What the sweep reads of a connection (grpc_h2.GrpcH2Connection)."""

    watch: Watch
    settings_seen: bool
    streams_opened: int
    pending_bytes: int
    writing_paused: bool
    progress: int
    closing: bool

    @property
    def open_streams(self) -> int: ...

    def close_with(self, code: int, message: str, abort: bool = False) -> None: ...


def sweep(connections: Iterable[Swept], limits: Limits, now: float) -> None:
    """One pass: close what has been closing too long, sent no preface/SETTINGS in
    time, made no progress on its pending responses, or stayed without a stream."""
    for conn in list(connections):
        watch = conn.watch
        if conn.closing:
            if watch.closing_since < 0:
                watch.closing_since = now
            elif now - watch.closing_since >= CLOSE_GRACE_S:
                conn.close_with(w.NO_ERROR, "", abort=True)
        elif not conn.settings_seen:
            if now - watch.opened_at >= limits.grpc_preface_timeout_s:
                message = f"no preface and SETTINGS within {limits.grpc_preface_timeout_s:g} s"
                conn.close_with(w.NO_ERROR, message)
        elif _stalled(conn, watch, limits, now):
            conn.close_with(
                w.ENHANCE_YOUR_CALM,
                f"responses waited {limits.grpc_stall_timeout_s:g} s without progress (flow-control "
                "window or socket not read; --grpc-stall-timeout-s)",
                abort=True,
            )
        elif _idle(conn, watch, limits, now):
            conn.close_with(w.NO_ERROR, f"no call for {limits.grpc_idle_timeout_s:g} s", abort=False)


def _stalled(conn: Swept, watch: Watch, limits: Limits, now: float) -> bool:
    if not (conn.pending_bytes or conn.writing_paused):
        watch.stall_since = -1.0
        return False
    if watch.stall_since < 0 or conn.progress != watch.stall_mark:
        watch.stall_since, watch.stall_mark = now, conn.progress
        return False
    return now - watch.stall_since >= limits.grpc_stall_timeout_s


def _idle(conn: Swept, watch: Watch, limits: Limits, now: float) -> bool:
    if conn.open_streams:
        watch.idle_since = -1.0
        return False
    if watch.idle_since < 0 or conn.streams_opened != watch.idle_mark:
        watch.idle_since, watch.idle_mark = now, conn.streams_opened
        return False
    return now - watch.idle_since >= limits.grpc_idle_timeout_s


def sweep_interval(limits: Limits) -> float:
    """Often enough that each timeout is honoured within a quarter of itself (or 1 s),
    rarely enough to cost nothing: 0.05 to 1 s."""
    shortest = min(limits.grpc_stall_timeout_s, limits.grpc_idle_timeout_s, limits.grpc_preface_timeout_s)
    return max(0.05, min(1.0, shortest / 4))
