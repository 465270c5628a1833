"""The REST port's own HTTP/1.1 server (serving_api.http_server) on a raw socket:
keep-alive, pipelining, chunked bodies, Expect: 100-continue, the body limit, HTTP/1.0,
malformed requests, and the routes it hands to FastAPI."""

from __future__ import annotations

import socket

import orjson
from serve_process import ServerProcess

BODY = orjson.dumps({"features": ["profile:age"], "entities": {"user_id": [1]}})


def _post(body: bytes, extra: str = "", version: str = "1.1") -> bytes:
    return (
        f"POST /get-online-features HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """`count` responses read by their Content-Length."""
    buffer = b""
    out = []
    while len(out) < count:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            head = buffer[:end].decode("latin-1").split("\r\n")
            headers = dict(line.split(": ", 1) for line in head[1:])
            headers = {k.lower(): v for k, v in headers.items()}
            length = int(headers.get("content-length", "0"))
            if len(buffer) >= end + 4 + length:
                out.append((int(head[0].split()[1]), headers, buffer[end + 4 : end + 4 + length]))
                buffer = buffer[end + 4 + length :]
                continue
        chunk = sock.recv(65536)
        if not chunk:
            break
        buffer += chunk
    return out


def _connect(server: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.http_port), timeout=10)


def test_keep_alive_and_pipelined_requests_answer_in_order(server: ServerProcess) -> None:
    bad = orjson.dumps({"features": ["profile:nope"], "entities": {"user_id": [1]}})
    with _connect(server) as sock:
        sock.sendall(_post(BODY) + _post(bad) + b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n" + _post(BODY))
        answers = _read_responses(sock, 4)
        assert [status for status, _, _ in answers] == [200, 404, 200, 200]
        assert orjson.loads(answers[0][2])["metadata"]["feature_names"] == ["user_id", "age"]
        assert "nope" in orjson.loads(answers[1][2])["detail"]
        assert orjson.loads(answers[2][2])["status"] == "SERVING"
        assert answers[3][2] == answers[0][2]  # the same request, the same answer, byte for byte
        assert all("date" in headers for _, headers, _ in answers)
        sock.sendall(_post(BODY))  # still open after four requests
        assert _read_responses(sock, 1)[0][0] == 200


def test_chunked_body_and_expect_continue(server: ServerProcess) -> None:
    with _connect(server) as sock:
        head = (b"POST /get-online-features HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                b"Expect: 100-continue\r\n\r\n")  # fmt: skip
        sock.sendall(head)
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        half = len(BODY) // 2
        chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, BODY[:half], len(BODY) - half, BODY[half:])
        sock.sendall(chunks)
        ((status, _, body),) = _read_responses(sock, 1)
        assert status == 200 and orjson.loads(body)["metadata"]["feature_names"] == ["user_id", "age"]


def test_body_limit_is_413_before_the_body_is_sent(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(b"POST /get-online-features HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n")
        ((status, headers, body),) = _read_responses(sock, 1)
        assert status == 413 and headers["connection"] == "close"
        assert "200000 bytes" in orjson.loads(body)["detail"]
        assert sock.recv(10) == b""  # closed: the rest of the stream cannot be trusted
    with _connect(server) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        ((_, _, text),) = _read_responses(sock, 1)
    assert b'code="413",endpoint="/get-online-features"' in text


def test_http_10_closes_and_malformed_is_400(server: ServerProcess) -> None:
    with _connect(server) as sock:
        sock.sendall(_post(BODY, version="1.0"))
        ((status, headers, _),) = _read_responses(sock, 1)
        assert status == 200 and headers["connection"] == "close"
        assert sock.recv(10) == b""
    with _connect(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        ((status, _, body),) = _read_responses(sock, 1)
        assert status == 400 and b"Traceback" not in body


def test_routes_other_than_the_hot_posts_go_to_fastapi(server: ServerProcess) -> None:
    with _connect(server) as sock:
        get = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
        sock.sendall(get % b"/openapi.json?x=1" + get % b"/nope")
        (status, headers, body), (missing, _, _) = _read_responses(sock, 2)
        assert status == 200 and headers["content-type"] == "application/json"
        assert "/get-online-features" in orjson.loads(body)["paths"]
        assert missing == 404
        sock.sendall(b"GET /get-online-features HTTP/1.1\r\nHost: t\r\n\r\n")  # wrong method
        assert _read_responses(sock, 1)[0][0] == 405
