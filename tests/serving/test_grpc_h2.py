"""The public gRPC port's own HTTP/2 server (serving_api.grpc_h2): flow control with a
peer that grants tiny windows, PING, bad content types and prefaces, relayed streaming
calls (health Watch), unknown methods, and the HPACK/gRPC encodings it writes."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import hpack
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from h2_client import RawH2
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.serving_api import h2_wire as w
from featureline.serving_api.grpc_h2 import GrpcH2Connection
from featureline.serving_api.limits import Limits
from featureline.serving_api.proto import SERVICE_NAME, pb
from featureline.settings import Settings
from featureline.specs import RepoSpec

USERS = list(range(1, 1001))


@pytest.fixture(scope="module")
def data(serving_settings: Settings, serving_spec: RepoSpec) -> Iterator[None]:
    client = redis.Redis.from_url(serving_settings.redis_url)
    client.flushdb()
    rows = [{"user_id": u, "age": u % 90, "country": "FR", "limit_eur": 10.0 * u, "score": 1.0,
             "level": 2, "vip": True, "event_us": now_us()} for u in USERS]  # fmt: skip
    write_latest(client, serving_spec, "profile", rows)
    yield
    client.close()


def _request(users: list[int]) -> bytes:
    features = pb.FeatureList(val=["profile:age", "profile:country", "profile:limit_eur", "profile:vip"])
    entities = {"user_id": pb.RepeatedValue(val=[pb.Value(int64_val=u) for u in users])}
    return pb.GetOnlineFeaturesRequest(features=features, entities=entities).SerializeToString()


def test_small_windows_response_matches_grpcio(server: ServerProcess, data: None) -> None:
    request = _request(USERS)
    path = f"/{SERVICE_NAME}/GetOnlineFeatures"
    with grpc.insecure_channel(server.target) as channel:
        expected = channel.unary_unary(path)(request, timeout=10)
    assert len(expected) > 65_535  # more than a default window, ~90 of the test's
    raw = RawH2(server.grpc_port, window=1_000)
    try:
        fields, body, n_data = raw.call(path, request)
    finally:
        raw.close()
    assert fields[":status"] == "200" and fields["grpc-status"] == "0"
    assert body == w.message_prefix(expected) + expected
    assert n_data >= len(body) // 1_000  # never more than the window at once


def test_ping_content_type_and_preface(server: ServerProcess) -> None:
    raw = RawH2(server.grpc_port)
    try:
        raw.sock.sendall(w.frame(w.PING, 0, 0, b"12345678"))
        pong = next(f for f in raw.frames() if f[0] == w.PING)
        assert pong[1] & w.ACK and pong[3] == b"12345678"
        fields, _, _ = raw.call(f"/{SERVICE_NAME}/GetOnlineFeatures", b"", content_type="text/plain")
        assert fields[":status"] == "415"
    finally:
        raw.close()
    with socket.create_connection(("127.0.0.1", server.grpc_port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        assert struct.pack(">I", w.PROTOCOL_ERROR) in answer  # GOAWAY, then closed


def test_relayed_and_unknown_methods(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()
        with pytest.raises(grpc.RpcError) as info:
            channel.unary_unary("/nope.Service/Method")(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        # The connection still serves after a cancelled stream and an error.
        assert (
            health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            == health_pb2.HealthCheckResponse.SERVING
        )


def test_malformed_message_is_a_status_not_a_crash(server: ServerProcess, data: None) -> None:
    raw = RawH2(server.grpc_port)
    try:
        path = f"/{SERVICE_NAME}/GetOnlineFeatures"
        block = raw.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                    (":authority", "t"), ("content-type", "application/grpc")])  # fmt: skip
        raw.sock.sendall(
            w.frame(w.HEADERS, w.END_HEADERS, 1, block) + w.frame(w.DATA, w.END_STREAM, 1, b"\x00\x00")
        )
        trailers = {}
        for kind, _, sid, payload in raw.frames():
            if kind == w.HEADERS and sid == 1:
                trailers = {k.decode(): v.decode() for k, v in raw.decoder.decode(payload, raw=True)}
                break
        assert trailers["grpc-status"] == str(w.GRPC_CODES["INTERNAL"])
        fields, body, _ = raw.call(path, _request([1]), sid=3)
        assert fields["grpc-status"] == "0" and len(body) > 5
    finally:
        raw.close()


def test_wire_encodings_decode_with_hpack() -> None:
    decoder = hpack.Decoder()
    block = w.RESPONSE_HEADERS + w.status_trailers("NOT_FOUND", "no feature 'x' — 100%\n")
    fields = dict(decoder.decode(block, raw=True))
    assert fields[b":status"] == b"200" and fields[b"content-type"] == b"application/grpc"
    assert fields[b"grpc-status"] == b"5"
    assert fields[b"grpc-message"] == b"no feature 'x' %E2%80%94 100%25%0A"
    long_value = b"v" * 300  # a length over the 7-bit prefix
    assert decoder.decode(w.literal(b"x-long", long_value), raw=True) == [(b"x-long", long_value)]
    assert w.hpack_int(1337, 5) == bytes([31, 154, 10])  # RFC 7541 C.1.2
    assert w.parse_timeout(b"250m") == pytest.approx(0.25)
    assert w.parse_timeout(b"2S") == 2.0 and w.parse_timeout(b"x") is None and w.parse_timeout(b"1X") is None
    assert w.unpad(w.PADDED, b"\x02abc\x00\x00") == b"abc"
    with pytest.raises(w.ConnectionFailure):
        w.unpad(w.PADDED, b"\x09abc")


def test_header_blocks_decode_the_same_with_the_block_cache() -> None:
    """A client's encoder indexes headers (its first block inserts, later ones refer to
    the table), evicts when its table is small, and varies a header now and then: every
    block must decode to what was encoded, cached or not."""
    from featureline.serving_api.h2_headers import HeaderBlocks

    blocks = HeaderBlocks(64 * 1024, 8)
    encoder = hpack.Encoder()
    encoder.header_table_size = 256  # small: later blocks evict earlier entries
    calls = []
    for i in range(200):
        path = f"/svc/Method{i % 3}"
        extra = [("x-request", str(i))] if i % 7 == 0 else []
        calls.append([(":method", "POST"), (":path", path), ("content-type", "application/grpc"), *extra])
    remembered = 0
    for headers in calls:
        block = encoder.encode(headers)
        decoded = [(k.decode(), v.decode()) for k, v in blocks.decode(block)]
        assert decoded == headers
        remembered = max(remembered, len(blocks.decoded))
    assert remembered >= 3  # the repeated blocks of the three methods were remembered


def test_grpc_server_aio_serves_the_same_bytes(
    serving_settings: Settings, server: ServerProcess, data: None
) -> None:
    """`--grpc-server aio` (grpcio on the public port) answers byte for byte like ours."""
    request = _request(USERS[:50])
    path = f"/{SERVICE_NAME}/GetOnlineFeatures"
    aio = start_server(serving_settings, "--grpc-server", "aio")
    try:
        with grpc.insecure_channel(server.target) as ours, grpc.insecure_channel(aio.target) as theirs:
            mine = ours.unary_unary(path)(request, timeout=10)
            other = theirs.unary_unary(path)(request, timeout=10)
            health = health_pb2_grpc.HealthStub(theirs).Check(health_pb2.HealthCheckRequest(), timeout=5)
    finally:
        aio.stop()
    # Same values, statuses and event times; the serving time differs per call.
    decode = pb.GetOnlineFeaturesResponse.FromString
    assert decode(mine).results == decode(other).results
    assert health.status == health_pb2.HealthCheckResponse.SERVING


# -- the HTTP/2 limits, one by one, on a connection with an in-memory transport -------

_PATH = "/test.Service/Echo"


class _Transport:
    """What GrpcH2Connection calls on its transport; records the bytes and the close."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True


class _Peer:
    """A client of one GrpcH2Connection: feeds it frames, reads back what it wrote."""

    def __init__(self, server: Any, window: int = 65_535) -> None:
        self.server = server
        self.conn = GrpcH2Connection(server)
        self.transport = _Transport()
        self.conn.connection_made(self.transport)  # type: ignore[arg-type]
        self.encoder = hpack.Encoder()
        self.seen = 0
        self.feed(w.PREFACE + w.settings_frame({w.INITIAL_WINDOW_SIZE: window}))

    def feed(self, data: bytes) -> None:
        self.conn.data_received(data)

    def block(self) -> bytes:
        fields = [(":method", "POST"), (":path", _PATH), ("content-type", "application/grpc")]
        return self.encoder.encode(fields)

    def call(self, sid: int, message: bytes = b"hi", end: bool = True) -> None:
        body = w.message_prefix(message) + message
        self.feed(w.frame(w.HEADERS, w.END_HEADERS, sid, self.block())
                  + w.frame(w.DATA, w.END_STREAM if end else 0, sid, body))  # fmt: skip

    def frames(self) -> list[tuple[int, int, int, bytes]]:
        """Frames written since the last look."""
        data, out = bytes(self.transport.written[self.seen :]), []
        self.seen = len(self.transport.written)
        while data:
            high, low, kind, flags, sid = w.HEAD.unpack_from(data)
            length = high << 16 | low
            out.append((kind, flags, sid, data[9 : 9 + length]))
            data = data[9 + length :]
        return out

    def goaway(self) -> int | None:
        codes = [struct.unpack(">I", p[4:8])[0] for k, _, _, p in self.frames() if k == w.GOAWAY]
        return codes[-1] if codes else None


def _server(reply: bytes = b"ok", now: list[float] | None = None, **limits: Any) -> Any:
    from featureline.serving_api.grpc_h2_server import GrpcH2Server

    server = GrpcH2Server({_PATH: lambda body, info: reply}, 100_000, 1 << 24, relay_target=None,
                          limits=Limits(**limits))  # fmt: skip
    clock = now if now is not None else [0.0]
    server.clock = lambda: clock[0]
    return server


def test_header_block_limits_close_before_decoding() -> None:
    peer = _Peer(_server(grpc_max_continuations=3))
    peer.feed(w.frame(w.HEADERS, 0, 1, b"\x82"))  # :method GET, not ended
    peer.feed(w.frame(w.CONTINUATION, 0, 1, b"\x82") * 3)
    assert peer.goaway() is None
    peer.feed(w.frame(w.CONTINUATION, 0, 1, b"\x82"))
    assert peer.goaway() == w.ENHANCE_YOUR_CALM and peer.transport.closed
    peer = _Peer(_server(grpc_max_header_bytes=1000))
    peer.feed(w.frame(w.HEADERS, 0, 1, b"\x00" * 600))  # not HPACK: never decoded
    peer.feed(w.frame(w.CONTINUATION, w.END_HEADERS, 1, b"\x00" * 600))
    assert peer.goaway() == w.ENHANCE_YOUR_CALM and peer.transport.closed
    # A bomb: one 3 KB entry in the dynamic table, referenced 5,000 times (15 MB decoded)
    # in a block of 5 KB: hpack stops at the list limit.
    peer = _Peer(_server())
    block = w.hpack_int(0, 6, 0x40) + b"\x01x" + w.hpack_int(3000, 7) + b"v" * 3000 + b"\xbe" * 5000
    peer.feed(w.frame(w.HEADERS, w.END_HEADERS, 1, block))
    assert peer.goaway() == w.COMPRESSION_ERROR and peer.transport.closed


def test_streams_over_the_limit_are_refused_and_resets_are_rate_limited() -> None:
    now = [0.0]
    peer = _Peer(_server(now=now, grpc_max_streams=2, grpc_max_resets_per_s=3))
    for sid in (1, 3, 5):
        peer.feed(w.frame(w.HEADERS, w.END_HEADERS, sid, peer.block()))
    resets = [(sid, p) for k, _, sid, p in peer.frames() if k == w.RST_STREAM]
    assert resets == [(5, struct.pack(">I", w.REFUSED_STREAM))]
    peer.feed(w.rst_stream(1, w.CANCEL) + w.rst_stream(3, w.CANCEL))  # 3 resets this second
    assert peer.goaway() is None and not peer.conn.streams
    now[0] = 1.0  # a new second: three more are allowed
    peer.feed(w.rst_stream(7, w.CANCEL) * 3)
    assert peer.goaway() is None
    peer.feed(w.rst_stream(7, w.CANCEL))
    assert peer.goaway() == w.ENHANCE_YOUR_CALM and peer.transport.closed


def test_settings_and_pings_are_rate_limited() -> None:
    peer = _Peer(_server(grpc_max_settings_per_s=3))  # the preface's SETTINGS is one
    peer.feed(w.settings_frame({}) * 2)
    assert peer.goaway() is None
    peer.feed(w.settings_frame({}))
    assert peer.goaway() == w.ENHANCE_YOUR_CALM
    peer = _Peer(_server(grpc_max_pings_per_s=2))
    peer.feed(w.frame(w.PING, 0, 0, b"12345678") * 2)
    peer.call(1)  # an answered call: pings since then are not "without data"
    peer.feed(w.frame(w.PING, 0, 0, b"12345678") * 2)
    assert peer.goaway() is None
    peer.feed(w.frame(w.PING, 0, 0, b"12345678"))
    assert peer.goaway() == w.ENHANCE_YOUR_CALM


def test_a_message_declaring_more_than_the_limit_is_refused_from_its_prefix() -> None:
    peer = _Peer(_server())
    peer.feed(w.frame(w.HEADERS, w.END_HEADERS, 1, peer.block()))
    peer.feed(w.frame(w.DATA, 0, 1, b"\x00" + (2**31).to_bytes(4, "big") + b"x" * 100))
    frames = peer.frames()
    trailers = next(p for k, _, sid, p in frames if k == w.HEADERS and sid == 1)
    fields = dict(hpack.Decoder().decode(trailers, raw=True))
    assert fields[b"grpc-status"] == b"8" and b"2147483648 bytes" in fields[b"grpc-message"]
    assert (w.RST_STREAM, 1) in [(k, sid) for k, _, sid, _ in frames]
    peer.feed(w.frame(w.DATA, 0, 1, b"x" * 16_000))  # the rest is dropped, and credited
    assert not peer.conn.streams and peer.goaway() is None


def test_the_connection_window_is_refilled_only_for_handled_bytes() -> None:
    peer = _Peer(_server(grpc_max_buffered_bytes=200_000))  # refilled at 100,000
    peer.frames()  # our SETTINGS and the window's first update
    message = b"m" * 60_000
    body = w.message_prefix(message) + message
    for sid in (1, 3):  # 120,000 bytes received, none handled
        peer.feed(w.frame(w.HEADERS, w.END_HEADERS, sid, peer.block()))
        for i in range(0, len(body), 16_000):
            peer.feed(w.frame(w.DATA, 0, sid, body[i : i + 16_000]))
    updates = [p for k, _, sid, p in peer.frames() if k == w.WINDOW_UPDATE and sid == 0]
    assert updates == []
    peer.feed(w.frame(w.DATA, w.END_STREAM, 1, b"") + w.frame(w.DATA, w.END_STREAM, 3, b""))
    frames = peer.frames()
    assert [struct.unpack(">I", p)[0] for k, _, sid, p in frames if k == w.WINDOW_UPDATE and sid == 0] == [
        2 * len(body)
    ]


def test_pending_responses_are_capped() -> None:
    peer = _Peer(_server(reply=b"r" * 300_000, grpc_max_pending_bytes=500_000), window=0)
    peer.call(1)  # one response of any size may wait
    assert peer.conn.pending_bytes == 300_005 and peer.goaway() is None
    peer.call(3)
    assert peer.goaway() == w.ENHANCE_YOUR_CALM and peer.transport.aborted


def test_the_sweep_closes_silent_idle_stalled_and_lingering_connections() -> None:
    from featureline.serving_api.h2_limits import sweep

    now = [0.0]
    server = _server(reply=b"r" * 100, now=now, grpc_preface_timeout_s=2, grpc_idle_timeout_s=5,
                     grpc_stall_timeout_s=3)  # fmt: skip
    silent = GrpcH2Connection(server)
    silent.connection_made(_Transport())  # type: ignore[arg-type]
    idle, stalled, busy = _Peer(server), _Peer(server, window=0), _Peer(server)
    stalled.call(1)
    busy.feed(w.frame(w.HEADERS, w.END_HEADERS, 1, busy.block()))  # a call open: not idle
    for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0):
        now[0] = t
        sweep(server.connections, server.limits, t)
    assert silent.closing and silent.transport.is_closing()  # type: ignore[union-attr]
    assert stalled.transport.aborted and stalled.goaway() == w.ENHANCE_YOUR_CALM
    assert idle.goaway() == w.NO_ERROR and idle.transport.closed
    assert not busy.conn.closing
    lingering = _Transport()
    lingering.close = lambda: None  # type: ignore[method-assign]  # a peer that never reads
    idle.conn.transport = lingering  # type: ignore[assignment]
    for t in (6.0, 7.0):
        sweep(server.connections, server.limits, t)
    assert lingering.aborted


def test_connections_over_the_limit_are_closed_at_once() -> None:
    server = _server(grpc_max_connections=1)
    first, second = _Peer(server), _Peer(server)
    assert server.connections == {first.conn}
    assert second.goaway() == w.ENHANCE_YOUR_CALM and second.transport.closed


def test_every_http2_limit_is_a_serve_flag_with_the_same_default() -> None:
    import argparse
    import dataclasses

    from featureline.serving_api.serve_flags import GRPC_LIMIT_FLAGS, add_grpc_limit_flags, grpc_limits

    fields = {f.name for f in dataclasses.fields(Limits)} - {"grpc_max_receive_bytes", "grpc_max_send_bytes"}
    assert {field for _, field, *_ in GRPC_LIMIT_FLAGS} == {f for f in fields if f.startswith("grpc_")}
    parser = argparse.ArgumentParser()
    add_grpc_limit_flags(parser)
    assert Limits(**grpc_limits(parser.parse_args([]))) == Limits()
    with pytest.raises(Exception, match="--grpc-max-streams must be > 0"):
        grpc_limits(parser.parse_args(["--grpc-max-streams", "0"]))
