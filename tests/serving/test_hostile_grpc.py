"""Hostile HTTP/2 clients against the gRPC port, on both stacks (issue 14; harness:
hostile.py, raw client: h2_client.py).

`native` (our HTTP/2 server, the default) passes every case. `aio` (grpcio serving the
port, with the options serving_api.grpc_server.aio_limit_options maps from Limits)
runs the same cases; where grpcio has no limit to set, the case is a strict xfail whose
reason is what was measured here, so the record fails the suite the day it passes.

The servers run with short timeouts (preface 1 s, stall 2 s; idle 30 s, and 2 s for the
idle-connections case: TEST_LIMITS says why) so that every case ends in a few seconds;
every other limit is at its default.
"""

from __future__ import annotations

import functools
import socket
import time
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis
from h2_client import RawH2
from hostile import Attack, assert_survives, closed_by_peer
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.serving_api import h2_wire as w
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings
from featureline.specs import RepoSpec

PATH = f"/{SERVICE_NAME}/GetOnlineFeatures"
# Short timeouts, and 1 MiB of pending responses, so that every case ends in a second or
# two; every other limit is at its default. The idle timeout is long (30 s) so that an
# abuser is closed by its abuse or not at all: grpcio, where it has no limit, ends the
# calls and closes on its idle timer, 2.1-4.2 s later with a 2 s timeout (measured),
# which the cases' 3 s wait raced (CI once saw a zero-window hold closed in time). Only
# the idle-connections case runs with a 2 s idle timeout, on a server of its own.
LIMITS = ("--grpc-preface-timeout-s", "1", "--grpc-stall-timeout-s", "2",
          "--grpc-max-pending-bytes", str(1024 * 1024))  # fmt: skip
TEST_LIMITS = (*LIMITS, "--grpc-idle-timeout-s", "30")
IDLE_LIMITS = (*LIMITS, "--grpc-idle-timeout-s", "2")
FEATURES = ["profile:age", "profile:country", "profile:limit_eur", "profile:score", "profile:level"]


def _request(n_entities: int) -> bytes:
    entities = {"user_id": pb.RepeatedValue(val=[pb.Value(int64_val=u) for u in range(1, n_entities + 1)])}
    return pb.GetOnlineFeaturesRequest(
        features=pb.FeatureList(val=FEATURES), entities=entities
    ).SerializeToString()


SMALL = _request(1)
MEDIUM = _request(1000)  # a response of 33 KB, ~7 ms of work


def _serve(
    stack: str, settings: Settings, spec: RepoSpec, limits: tuple[str, ...]
) -> Iterator[ServerProcess]:
    client = redis.Redis.from_url(settings.redis_url)
    write_latest(client, spec, "profile", [{"user_id": 1, "age": 30, "event_us": now_us()}])
    client.close()
    proc = start_server(settings, "--grpc-server", stack, *limits)
    # One call first: the worker opens its Redis connection on its first read, and the
    # cases measure the HTTP/2 server, not that connect (a first read cancelled while it
    # connects, as the rapid reset does, is covered by the reader's connect task:
    # online_store/redis/aio.py, RedisClient._connection).
    with grpc.insecure_channel(proc.target) as channel:
        channel.unary_unary(PATH)(SMALL, timeout=10)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest, serving_settings: Settings, serving_spec: RepoSpec
) -> Iterator[ServerProcess]:
    yield from _serve(request.param, serving_settings, serving_spec, TEST_LIMITS)


@pytest.fixture()
def idle_target(
    request: pytest.FixtureRequest, serving_settings: Settings, serving_spec: RepoSpec
) -> Iterator[ServerProcess]:
    yield from _serve(request.param, serving_settings, serving_spec, IDLE_LIMITS)


def stacks(aio_fails: str = "", strict: bool = True) -> pytest.MarkDecorator:
    """Both stacks; on aio, a strict xfail with what was measured where it fails (not
    strict where grpcio was measured both failing and passing the same case)."""
    marks = [pytest.mark.xfail(strict=strict, reason=f"grpcio: {aio_fails}")] if aio_fails else []
    return pytest.mark.parametrize("target", ["native", pytest.param("aio", marks=marks)], indirect=True)


def _closed(raw: RawH2, within_s: float = 3.0) -> bool:
    """GOAWAY then close (or a reset connection) within `within_s`."""
    try:
        return raw.goaway(within_s) is not None
    finally:
        raw.close()


# -- attacks: (host, port) -> whether the server closed or refused the abuser --------


def lasting(seconds: float) -> Callable[[Attack], Attack]:
    """An attack that lasts at least `seconds`: a server that ends it at once still
    gets probed a few times while it runs (the harness asks for two probes or more)."""

    def wrap(attack: Attack) -> Attack:
        @functools.wraps(attack)
        def timed(host: str, port: int) -> bool:
            end = time.monotonic() + seconds
            closed = attack(host, port)
            time.sleep(max(0.0, end - time.monotonic()))
            return closed

        return timed

    return wrap


@lasting(0.5)
def rapid_reset(host: str, port: int) -> bool:
    """CVE-2023-44487: 10,000 calls, each cancelled as soon as it is sent."""
    raw = RawH2(port)
    for first in range(1, 20_000, 200):
        frames = b"".join(
            raw.request(s, PATH, SMALL) + w.rst_stream(s, w.CANCEL) for s in range(first, first + 200, 2)
        )
        if not raw.send(frames):
            break
    return _closed(raw)


@lasting(0.5)
def continuation_flood(host: str, port: int) -> bool:
    """A header block that never ends: 64 MiB of small headers in CONTINUATION frames."""
    raw = RawH2(port)
    fields = w.literal(b"x-flood", b"v" * 100) * 150  # ~16 KB of valid HPACK
    raw.send(w.frame(w.HEADERS, 0, 1, raw.block(PATH)))
    for _ in range(4096):
        if not raw.send(w.frame(w.CONTINUATION, 0, 1, fields)):
            break
    return _closed(raw)


@lasting(0.5)
def oversized_header(host: str, port: int) -> bool:
    """One header whose value is 16 MiB, arriving in CONTINUATION frames."""
    raw = RawH2(port)
    size = 16 * 1024 * 1024
    head = raw.block(PATH) + b"\x00" + w.hpack_int(len(b"x-big"), 7) + b"x-big" + w.hpack_int(size, 7)
    raw.send(w.frame(w.HEADERS, 0, 1, head))
    for _ in range(size // 16_000):
        if not raw.send(w.frame(w.CONTINUATION, 0, 1, b"v" * 16_000)):
            break
    return _closed(raw)


@lasting(0.5)
def hpack_bomb(host: str, port: int) -> bool:
    """A 4 KB value put in the dynamic table, then referenced 12,000 times in one
    16 KB block (~48 MB decoded); again on new streams."""
    raw = RawH2(port)
    insert = w.hpack_int(0, 6, 0x40) + b"\x05x-big" + w.hpack_int(4000, 7) + b"v" * 4000
    block = raw.block(PATH) + insert + b"\xbe" * 12_000  # index 62: the newest entry
    refs = raw.block(PATH) + b"\xbe" * 16_000
    raw.send(w.frame(w.HEADERS, w.END_HEADERS, 1, block))
    for sid in range(3, 400, 2):
        if not raw.send(w.frame(w.HEADERS, w.END_HEADERS, sid, refs)):
            break
    return _closed(raw)


def _flood(port: int, frame: bytes, n: int) -> bool:
    raw = RawH2(port)
    batch = frame * 1000
    for _ in range(n // 1000):
        if not raw.send(batch):
            break
    return _closed(raw)


@lasting(0.5)
def settings_flood(host: str, port: int) -> bool:
    """100,000 SETTINGS frames, each of which asks for an ACK."""
    return _flood(port, w.settings_frame({w.MAX_FRAME_SIZE: 16_384}), 100_000)


@lasting(0.5)
def ping_flood(host: str, port: int) -> bool:
    """100,000 PINGs."""
    return _flood(port, w.frame(w.PING, 0, 0, b"12345678"), 100_000)


@lasting(0.5)
def too_many_streams(host: str, port: int) -> bool:
    """1,000 calls opened at once and never finished (the limit is 100): refused."""
    raw = RawH2(port, timeout=3)
    raw.handshake()  # grpcio applies its limit once its SETTINGS are acknowledged
    raw.send(b"".join(w.frame(w.HEADERS, w.END_HEADERS, sid, raw.block(PATH)) for sid in range(1, 2000, 2)))
    refused = w.REFUSED_STREAM.to_bytes(4, "big")
    try:
        return any(kind == w.GOAWAY or kind == w.RST_STREAM and payload == refused
                   for kind, _, _, payload in raw.frames())  # fmt: skip
    except TimeoutError:
        return False
    finally:
        raw.close()


@lasting(0.5)
def zero_window_hold(host: str, port: int) -> bool:
    """A window of 0 for every stream, then calls with 33 KB responses, one every 20 ms
    (in turn, so the server's work stays small): none can be sent, all would wait in
    the server (1.3 MB; the test server's cap is 1 MiB)."""
    raw = RawH2(port, window=0)
    for sid in range(1, 80, 2):
        if not raw.send(raw.request(sid, PATH, MEDIUM)):
            break
        time.sleep(0.02)
    return _closed(raw)


@lasting(0.5)
def huge_message(host: str, port: int) -> bool:
    """A message that declares 2 GiB, its bytes trickled: refused at once."""
    raw = RawH2(port)
    raw.send(w.frame(w.HEADERS, w.END_HEADERS, 1, raw.block(PATH)))
    raw.send(w.frame(w.DATA, 0, 1, b"\x00" + (2**31 - 1).to_bytes(4, "big") + b"x" * 16_000))
    refused = False
    raw.sock.settimeout(2)
    try:
        for kind, _, sid, payload in raw.frames():
            if sid == 1 and kind == w.RST_STREAM:
                refused = True
                break
            if sid == 1 and kind == w.HEADERS and raw.fields(payload).get("grpc-status") == "8":
                refused = True
                break
    except TimeoutError:
        pass
    for _ in range(3):  # more bytes after the refusal are dropped (within the window)
        raw.send(w.frame(w.DATA, 0, 1, b"x" * 16_000))
        time.sleep(0.05)
    raw.close()
    return refused


@lasting(0.5)
def window_storm(host: str, port: int) -> bool:
    """100 open calls whose responses wait for window, then 20,000 SETTINGS frames that
    move every stream's window (INITIAL_WINDOW_SIZE 0, 1, 0, ...)."""
    raw = RawH2(port, window=0)
    medium = _request(200)
    raw.send(b"".join(raw.request(sid, PATH, medium) for sid in range(1, 200, 2)))
    time.sleep(0.3)
    storm = (
        w.settings_frame({w.INITIAL_WINDOW_SIZE: 1}) + w.settings_frame({w.INITIAL_WINDOW_SIZE: 0})
    ) * 500
    for _ in range(20):
        if not raw.send(storm):
            break
    return _closed(raw)


@lasting(0.5)
def bad_preface(host: str, port: int) -> bool:
    with socket.create_connection((host, port), timeout=2) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return closed_by_peer(sock, 2.0)


def idle_connections(host: str, port: int) -> bool:
    """500 connections: half never send a byte, half send the preface and stay idle;
    all are closed (preface timeout 1 s, idle timeout 2 s here)."""
    socks = []
    for i in range(500):
        sock = socket.create_connection((host, port), timeout=2)
        if i % 2:
            sock.sendall(w.PREFACE + w.settings_frame({}))
        socks.append(sock)
    deadline = time.monotonic() + 5
    try:
        return all(closed_by_peer(sock, max(0.01, deadline - time.monotonic())) for sock in socks)
    finally:
        for sock in socks:
            sock.close()


# -- the cases --------------------------------------------------------------------------


@stacks("10,000 calls each reset as sent: no GOAWAY, the connection stays open (worker +2 MiB)")
def test_rapid_reset(target: ServerProcess) -> None:
    assert_survives(target, rapid_reset, target.grpc_port)


@stacks()
def test_continuation_flood(target: ServerProcess) -> None:
    assert_survives(target, continuation_flood, target.grpc_port)


@stacks(
    "a 16 MiB header value in CONTINUATION frames is read to its end; the connection stays open (+5-8 MiB)"
)
def test_oversized_header(target: ServerProcess) -> None:
    assert_survives(target, oversized_header, target.grpc_port)


@stacks()
def test_hpack_bomb(target: ServerProcess) -> None:
    assert_survives(target, hpack_bomb, target.grpc_port)


@stacks(
    "100,000 SETTINGS all acknowledged; the connection stays open (closed by a 2 s idle timer 2.1 s later)"
)
def test_settings_flood(target: ServerProcess) -> None:
    assert_survives(target, settings_flood, target.grpc_port)


# grpcio's outcome varies from run to run: on the quiet machine every PING was answered
# and the connection was open 12 s later; on a loaded one its ping-strike policy sent
# GOAWAY in time (an XPASS). Not strict, so that neither fails the suite; the native
# stack's pass is strict as everywhere.
@stacks("100,000 PINGs all answered; the connection is still open 12 s later (in some runs)", strict=False)
def test_ping_flood(target: ServerProcess) -> None:
    assert_survives(target, ping_flood, target.grpc_port)


@stacks()
def test_more_streams_than_allowed(target: ServerProcess) -> None:
    assert_survives(target, too_many_streams, target.grpc_port)


@stacks(
    "responses held for a zero window with no cap nor stall timeout: the calls end, the "
    "connection stays open (closed by a 2 s idle timer 2.9-3.3 s later)"
)
def test_zero_window_hold(target: ServerProcess) -> None:
    assert_survives(target, zero_window_hold, target.grpc_port)


@stacks()
def test_message_declaring_2_gib(target: ServerProcess) -> None:
    assert_survives(target, huge_message, target.grpc_port)


@stacks("20,000 SETTINGS moving 100 open streams' windows: the connection stays open")
def test_settings_window_storm(target: ServerProcess) -> None:
    assert_survives(target, window_storm, target.grpc_port)


@stacks()
def test_bad_preface(target: ServerProcess) -> None:
    assert_survives(target, bad_preface, target.grpc_port)


@pytest.mark.parametrize("idle_target", ["native", "aio"], indirect=True)
def test_idle_connections(idle_target: ServerProcess) -> None:
    assert_survives(idle_target, idle_connections, idle_target.grpc_port)
