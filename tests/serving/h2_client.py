"""A minimal HTTP/2 client on a plain socket, to drive a gRPC port where grpcio cannot:
tiny flow-control windows, PING, wrong content types, and the hostile clients of
tests/serving/test_hostile_grpc.py (floods, resets, oversized header blocks)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import hpack

from featureline.serving_api import h2_wire as w

Frame = tuple[int, int, int, bytes]  # kind, flags, stream id, payload


class RawH2:
    def __init__(self, port: int, window: int = 65_535, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buffer = b""
        self.sock.sendall(w.PREFACE + w.settings_frame({w.INITIAL_WINDOW_SIZE: window}))

    def frames(self) -> Iterator[Frame]:
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

    def handshake(self) -> None:
        """Read up to the server's SETTINGS and acknowledge them."""
        for kind, flags, _, _ in self.frames():
            if kind == w.SETTINGS and not flags & w.ACK:
                self.sock.sendall(w.frame(w.SETTINGS, w.ACK, 0))
                return

    def block(self, path: str, content_type: str = "application/grpc") -> bytes:
        return self.encoder.encode([(":method", "POST"), (":scheme", "http"), (":path", path),
                                    (":authority", "test"), ("content-type", content_type),
                                    ("te", "trailers")])  # fmt: skip

    def request(self, sid: int, path: str, message: bytes) -> bytes:
        """A whole unary call's frames (not sent)."""
        body = w.message_prefix(message) + message
        headers = w.frame(w.HEADERS, w.END_HEADERS, sid, self.block(path))
        return headers + w.frame(w.DATA, w.END_STREAM, sid, body)

    def call(self, path: str, message: bytes, content_type: str = "application/grpc",
             sid: int = 1) -> tuple[dict[str, str], bytes, int]:  # fmt: skip
        """One unary call; returns (headers and trailers, response body, DATA frames)."""
        body = w.message_prefix(message) + message
        self.sock.sendall(
            w.frame(w.HEADERS, w.END_HEADERS, sid, self.block(path, content_type))
            + w.frame(w.DATA, w.END_STREAM, sid, body)
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
                fields.update(self.fields(payload))
                if flags & w.END_STREAM:
                    return fields, data, n_data
            elif kind == w.RST_STREAM and stream == sid:
                return fields, data, n_data
        raise AssertionError("connection closed before the call ended")

    def fields(self, block: bytes) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.decoder.decode(block, raw=True)}

    def send(self, data: bytes) -> bool:
        """False when the server has closed the connection (reset or broken pipe)."""
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            return False
        return True

    def goaway(self, within_s: float) -> int | None:
        """Read (and drop) frames until the server's GOAWAY and close: its error code,
        -1 if it closed without GOAWAY, None if it did neither within `within_s`."""
        deadline = time.monotonic() + within_s
        code = -1
        try:
            while (left := deadline - time.monotonic()) > 0:
                self.sock.settimeout(left)
                for kind, _, _, payload in self.frames():
                    if kind == w.GOAWAY:
                        code = int.from_bytes(payload[4:8], "big")
                    if time.monotonic() > deadline:
                        return None
                return code  # EOF
        except (ConnectionResetError, BrokenPipeError):
            return code
        except TimeoutError:
            return None
        return None

    def close(self) -> None:
        self.sock.close()
