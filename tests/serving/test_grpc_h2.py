"""The public gRPC port's own HTTP/2 server (serving_api.grpc_h2): flow control with a
peer that grants tiny windows, PING, bad content types and prefaces, relayed streaming
calls (health Watch), unknown methods, and the HPACK/gRPC encodings it writes."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import grpc
import hpack
import pytest
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serve_process import ServerProcess, start_server
from serving_data import now_us, write_latest

from featureline.serving_api import h2_wire as w
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


class RawH2:
    """A minimal HTTP/2 client on a socket, to drive the server where grpcio cannot:
    tiny flow-control windows, PING, wrong content types."""

    def __init__(self, port: int, window: int = 65_535) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.sock.sendall(w.PREFACE + w.settings_frame({w.INITIAL_WINDOW_SIZE: window}))

    def frames(self) -> Iterator[tuple[int, int, int, bytes]]:
        while True:
            while len(self.buffer) < 9 or len(self.buffer) < 9 + (
                (self.buffer[0] << 16) | (self.buffer[1] << 8) | self.buffer[2]
            ):
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                self.buffer += chunk
            high, low, kind, flags, sid = w.HEAD.unpack_from(self.buffer)
            length = high << 16 | low
            payload, self.buffer = self.buffer[9 : 9 + length], self.buffer[9 + length :]
            yield kind, flags, sid & 0x7FFFFFFF, payload

    def call(self, path: str, message: bytes, content_type: str = "application/grpc",
             sid: int = 1) -> tuple[dict[str, str], bytes, int]:  # fmt: skip
        """One unary call; returns (headers and trailers, response body, DATA frames)."""
        block = self.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                     (":authority", "test"), ("content-type", content_type),
                                     ("te", "trailers")])  # fmt: skip
        body = w.message_prefix(message) + message
        self.sock.sendall(
            w.frame(w.HEADERS, w.END_HEADERS, sid, block) + w.frame(w.DATA, w.END_STREAM, sid, body)
        )
        fields: dict[str, str] = {}
        data = b""
        n_data = 0
        for kind, flags, stream, payload in self.frames():
            if kind == w.DATA and stream == sid:
                data += payload
                n_data += 1
                # Grant exactly what was used: the server must wait for each grant.
                self.sock.sendall(w.window_update(0, len(payload)) + w.window_update(sid, len(payload)))
            elif kind == w.HEADERS and stream == sid:
                fields.update({k.decode(): v.decode() for k, v in self.decoder.decode(payload, raw=True)})
                if flags & w.END_STREAM:
                    return fields, data, n_data
            elif kind == w.RST_STREAM and stream == sid:
                return fields, data, n_data
        raise AssertionError("connection closed before the call ended")

    def close(self) -> None:
        self.sock.close()


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
    from featureline.serving_api.grpc_h2 import GrpcH2Connection, GrpcH2Server

    conn = GrpcH2Connection(GrpcH2Server({}, 1024, 1024, relay_target=None))
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
        decoded = [(k.decode(), v.decode()) for k, v in conn._decode(block)]
        assert decoded == headers
        remembered = max(remembered, len(conn.decoded_blocks))
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
