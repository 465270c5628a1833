"""TLS and mutual TLS on both serving ports (issue 14), with certificates made here
(benchmarks/serve/certs.py: a CA, a server certificate for 127.0.0.1/localhost, a
client certificate from the CA and one from another CA).

Two servers per module, both requiring client certificates (--tls-client-ca): the
native gRPC stack and `--grpc-server aio`; a third, TLS without client certificates,
is configured by FEATURELINE_TLS_* only. Clients: httpx, the SDK (sync, async and the
tensor client's per-connection channels), and Feast's own generated gRPC stub.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
import redis
from serve_process import ServerProcess, child_env
from serving_data import now_us, write_latest

from benchmarks.serve.certs import Pki, make_pki
from featureline.cli.devstack import free_ports
from featureline.errors import ServiceUnavailableError
from featureline.serving_api.client import AsyncFeatureClient, FeatureClient, TlsHandshakeError
from featureline.serving_api.tls import ClientTls
from featureline.serving_api.typed_client import AsyncTensorClient
from featureline.settings import Settings
from featureline.specs import RepoSpec

STACKS = ("native", "aio")
USER = 7714  # an id no other serving test writes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def good(pki: Pki) -> ClientTls:
    return ClientTls(ca=str(pki.ca), cert=str(pki.client_cert), key=str(pki.client_key))


def https(server: ServerProcess) -> str:
    return f"https://127.0.0.1:{server.http_port}"


def _spawn(settings: Settings, *flags: str, env: dict[str, str] | None = None) -> ServerProcess:
    """`featureline serve` on free ports (not yet ready: see `_ready`)."""
    http_port, grpc_port = free_ports(2)
    argv = [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(settings.repo),
            "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            *flags]  # fmt: skip
    log = open(settings.home / f"serve-tls-{http_port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        argv, env=child_env(settings, FEATURELINE_HOME=str(settings.home), **(env or {})),
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return ServerProcess(proc, http_port, grpc_port, Path(log.name))


def _ready(server: ServerProcess, pki: Pki) -> ServerProcess:
    """Once its REST port answers over TLS (60 s at most)."""
    verify = good(pki).ssl_context()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"featureline serve exited: {server.log_text()}")
        try:
            httpx.get(f"{https(server)}/openapi.json", timeout=1.0, verify=verify)
            return server
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"featureline serve did not answer over TLS in 60 s: {server.log_text()}")


@pytest.fixture(scope="module")
def servers(
    serving_settings: Settings, serving_spec: RepoSpec, pki: Pki
) -> Iterator[dict[str, ServerProcess]]:
    """Mutual TLS on both ports, one server per gRPC stack (started together)."""
    client = redis.Redis.from_url(serving_settings.redis_url)
    write_latest(client, serving_spec, "profile", [{"user_id": USER, "age": 41, "event_us": now_us()}])
    client.close()
    tls = [
        "--tls-cert",
        str(pki.server_cert),
        "--tls-key",
        str(pki.server_key),
        "--tls-client-ca",
        str(pki.ca),
    ]
    started: dict[str, ServerProcess] = {}
    try:
        for grpc_stack in STACKS:
            started[grpc_stack] = _spawn(serving_settings, *tls, "--grpc-server", grpc_stack)
        yield {name: _ready(server, pki) for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()


def age(rows: dict[str, list[object]]) -> object:
    return rows["age"][0]


def rest_body() -> dict[str, object]:
    return {"features": ["profile:age"], "entities": {"user_id": [USER]}}


def _alpn(port: int, offered: list[str], pki: Pki) -> str | None:
    context = good(pki).ssl_context(offered)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        return tls.selected_alpn_protocol()


def test_rest_over_https_with_a_client_certificate(servers: dict[str, ServerProcess], pki: Pki) -> None:
    server = servers["native"]
    with httpx.Client(verify=good(pki).ssl_context(), timeout=5) as client:
        reply = client.post(f"{https(server)}/get-online-features", json=rest_body())
        assert reply.status_code == 200, reply.text
        assert reply.json()["results"][1]["values"] == [41]
        assert client.get(f"{https(server)}/health").status_code == 200
    # The REST port offers http/1.1 only; the gRPC port h2 only, on both stacks.
    assert _alpn(server.http_port, ["h2", "http/1.1"], pki) == "http/1.1"
    for name in STACKS:
        assert _alpn(servers[name].grpc_port, ["h2", "http/1.1"], pki) == "h2", name


@pytest.mark.parametrize("grpc_stack", STACKS)
def test_grpc_over_tls_through_the_sdk(servers: dict[str, ServerProcess], pki: Pki, grpc_stack: str) -> None:
    target = servers[grpc_stack].target
    with FeatureClient(target, tls=good(pki), timeout_s=5) as client:
        assert age(client.get_online_features({"user_id": [USER]}, features=["profile:age"]).to_dict()) == 41

    async def tensor() -> tuple[object, object]:
        async with AsyncFeatureClient(target, tls=good(pki), timeout_s=5) as aclient:
            rows = await aclient.get_online_features({"user_id": [USER]}, features=["profile:age"])
        # Two connections: each its own secure channel (typed_client._ConnectionClient).
        async with AsyncTensorClient(target, "svc", connections=2, tls=good(pki), timeout_s=5) as tc:
            fetched = await tc.fetch({"user_id": [USER], "merchant_id": ["m1"], "amount": [1.0]})
        return age(rows.to_dict()), fetched.values[0][fetched.columns.index("profile__age")]

    assert asyncio.run(tensor()) == (41, 41.0)


@pytest.mark.parametrize("grpc_stack", STACKS)
def test_feasts_own_stub_over_tls(servers: dict[str, ServerProcess], pki: Pki, grpc_stack: str) -> None:
    from feast.protos.feast.serving import ServingService_pb2 as feast_pb
    from feast.protos.feast.serving import ServingService_pb2_grpc as feast_grpc
    from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

    credentials = grpc.ssl_channel_credentials(
        pki.ca.read_bytes(), pki.client_key.read_bytes(), pki.client_cert.read_bytes()
    )
    request = feast_pb.GetOnlineFeaturesRequest(
        features=feast_pb.FeatureList(val=["profile:age"]),
        entities={"user_id": RepeatedValue(val=[Value(int64_val=USER)])},
    )
    with grpc.secure_channel(servers[grpc_stack].target, credentials) as channel:
        reply = feast_grpc.ServingServiceStub(channel).GetOnlineFeatures(request, timeout=5)
    names = list(reply.metadata.feature_names.val)
    assert reply.results[names.index("age")].values[0].int64_val == 41


def _refused_rest(url: str, tls: ClientTls) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{url}/get-online-features", json=rest_body(), verify=tls.ssl_context(), timeout=3)


@pytest.mark.parametrize("grpc_stack", STACKS)
def test_mutual_tls_refuses_a_client_without_a_certificate_or_from_another_ca(
    servers: dict[str, ServerProcess], pki: Pki, grpc_stack: str
) -> None:
    server = servers[grpc_stack]
    no_cert = ClientTls(ca=str(pki.ca))
    other = ClientTls(ca=str(pki.ca), cert=str(pki.other_client_cert), key=str(pki.other_client_key))
    for tls in (no_cert, other):
        _refused_rest(https(server), tls)
        started = time.monotonic()
        with (
            FeatureClient(server.target, tls=tls, timeout_s=3) as client,
            pytest.raises(ServiceUnavailableError) as refused,
        ):
            client.get_online_features({"user_id": [USER]}, features=["profile:age"])
        assert server.target in str(refused.value)
        assert "check the client certificate and key" in str(refused.value)
        assert time.monotonic() - started < 2.5, "a refused handshake is not retried to the deadline"
    # The good client is served on the same server right after.
    with FeatureClient(server.target, tls=good(pki), timeout_s=5) as client:
        assert age(client.get_online_features({"user_id": [USER]}, features=["profile:age"]).to_dict()) == 41


def test_an_untrusted_server_certificate_is_a_tls_error_naming_the_target(
    servers: dict[str, ServerProcess], pki: Pki
) -> None:
    target = servers["native"].target
    wrong_ca = ClientTls(ca=str(pki.other_ca), cert=str(pki.client_cert), key=str(pki.client_key))
    with (
        FeatureClient(target, tls=wrong_ca, timeout_s=3) as client,
        pytest.raises(TlsHandshakeError, match=f"feature server {target}: TLS handshake failed"),
    ):
        client.get_online_features({"user_id": [USER]}, features=["profile:age"])


def _closed_by_server(port: int, data: bytes) -> None:
    """Plaintext bytes to a TLS port: the server closes the connection (a recv that
    times out after 3 s, socket.timeout, fails the test)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(data)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(4096):
                pass


@pytest.mark.parametrize("grpc_stack", STACKS)
def test_a_plaintext_client_fails_cleanly_and_the_server_keeps_serving(
    servers: dict[str, ServerProcess], pki: Pki, grpc_stack: str
) -> None:
    server = servers[grpc_stack]
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{server.url}/get-online-features", json=rest_body(), timeout=3)
    _closed_by_server(server.http_port, b"POST /get-online-features HTTP/1.1\r\nHost: x\r\n\r\n")
    _closed_by_server(server.grpc_port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 64)
    with (
        FeatureClient(server.target, timeout_s=2) as plain,
        pytest.raises(ServiceUnavailableError, match=server.target) as refused,
    ):
        plain.get_online_features({"user_id": [USER]}, features=["profile:age"])
    assert "if the server speaks TLS, connect with tls=" in str(refused.value)
    with FeatureClient(server.target, tls=good(pki), timeout_s=5) as client:
        assert age(client.get_online_features({"user_id": [USER]}, features=["profile:age"]).to_dict()) == 41
    reply = httpx.post(f"{https(server)}/get-online-features", json=rest_body(),
                       verify=good(pki).ssl_context(), timeout=5)  # fmt: skip
    assert reply.status_code == 200
    assert server.proc.poll() is None


def test_tls_without_client_certificates_from_the_environment(
    serving_settings: Settings, serving_spec: RepoSpec, pki: Pki, servers: dict[str, ServerProcess]
) -> None:
    """FEATURELINE_TLS_CERT / _KEY alone: TLS on both ports, no client certificate asked."""
    env = {"FEATURELINE_TLS_CERT": str(pki.server_cert), "FEATURELINE_TLS_KEY": str(pki.server_key)}
    server = _spawn(serving_settings, env=env)
    try:
        _ready(server, pki)
        server_only = ClientTls(ca=str(pki.ca))
        reply = httpx.post(f"{https(server)}/get-online-features", json=rest_body(),
                           verify=server_only.ssl_context(), timeout=5)  # fmt: skip
        assert reply.json()["results"][1]["values"] == [41]
        with FeatureClient(server.target, tls=server_only, timeout_s=5) as client:
            rows = client.get_online_features({"user_id": [USER]}, features=["profile:age"])
        assert age(rows.to_dict()) == 41
        # A client that does not trust the server's CA refuses it (ssl's own check).
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{https(server)}/health", verify=ClientTls(ca=str(pki.other_ca)).ssl_context())
    finally:
        server.stop()


def _serve_fails(settings: Settings, *flags: str) -> str:
    http_port, grpc_port = free_ports(2)
    argv = [sys.executable, "-m", "featureline.cli", "serve", "--repo", str(settings.repo),
            "--host", "127.0.0.1", "--http-port", str(http_port), "--grpc-port", str(grpc_port),
            *flags]  # fmt: skip
    env = child_env(settings, FEATURELINE_HOME=str(settings.home))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_serve_stops_at_start_on_a_bad_certificate_or_key(serving_settings: Settings, pki: Pki) -> None:
    missing = str(pki.server_cert.with_name("missing.pem"))
    line = _serve_fails(serving_settings, "--tls-cert", missing, "--tls-key", str(pki.server_key))
    assert line.startswith("error: cannot read the TLS certificate") and "missing.pem" in line
    # The client's key with the server's certificate: not a pair.
    line = _serve_fails(
        serving_settings, "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.client_key)
    )
    assert "are not a PEM certificate and its private key" in line and "KEY_VALUES_MISMATCH" in line
    line = _serve_fails(serving_settings, "--tls-key", str(pki.server_key))
    assert "TLS needs both --tls-cert and --tls-key" in line


def test_the_worker_takes_the_serving_tls_options(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from featureline.errors import BadInputError
    from featureline.serving_api.workers.worker_cli import client_tls, configure

    def parsed(*argv: str) -> ClientTls | None:
        parser = argparse.ArgumentParser()
        configure(parser)
        return client_tls(parser.parse_args(["--model", "m.pt", *argv]))

    assert parsed() is None
    assert parsed("--serving-tls") == ClientTls()
    assert parsed("--serving-ca", str(pki.ca)) == ClientTls(ca=str(pki.ca))
    monkeypatch.setenv("FEATURELINE_SERVING_TLS_CA", str(pki.ca))
    monkeypatch.setenv("FEATURELINE_SERVING_TLS_CERT", str(pki.client_cert))
    monkeypatch.setenv("FEATURELINE_SERVING_TLS_KEY", str(pki.client_key))
    assert parsed() == good(pki)
    with pytest.raises(BadInputError, match="do not match"):
        parsed("--serving-key", str(pki.other_client_key))
    monkeypatch.delenv("FEATURELINE_SERVING_TLS_KEY")
    with pytest.raises(BadInputError, match="needs its key"):
        parsed()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_2_is_the_oldest_version_served(servers: dict[str, ServerProcess], pki: Pki) -> None:
    for port in (servers["native"].http_port, servers["native"].grpc_port):
        tls12 = good(pki).ssl_context()
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
            tls12.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.version() == "TLSv1.2"
            assert tls.cipher()[0].startswith("ECDHE-") and "GCM" in tls.cipher()[0]
        # A client that would take TLS 1.1 (security level 0 lets this OpenSSL offer it).
        tls11 = good(pki).ssl_context()
        tls11.set_ciphers("DEFAULT:@SECLEVEL=0")
        tls11.minimum_version = ssl.TLSVersion.TLSv1_1
        tls11.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            socket.create_connection(("127.0.0.1", port), timeout=3) as raw,
            pytest.raises(ssl.SSLError, match="(?i)protocol version|unsupported protocol|EOF"),
        ):
            tls11.wrap_socket(raw, server_hostname="localhost")


def test_handshake_failures_are_tls_errors_and_not_retried() -> None:
    from grpc.aio import AioRpcError, Metadata

    from featureline.serving_api.client import _retryable, translate_error

    detail = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Ssl handshake "
        "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
        "CERTIFICATE_VERIFY_FAILED"
    )
    failed = AioRpcError(grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), details=detail)
    assert isinstance(translate_error(failed, "h:1", True), TlsHandshakeError)
    assert not _retryable(failed)
    closed = AioRpcError(grpc.StatusCode.UNAVAILABLE, Metadata(), Metadata(), details="x: Socket closed")
    assert _retryable(closed)
    assert type(translate_error(closed, "h:1")) is ServiceUnavailableError
    assert str(translate_error(closed, "h:1")) == "feature server h:1: UNAVAILABLE: x: Socket closed"


def test_cli_push_reaches_a_tls_server_with_the_serving_tls_flags(
    servers: dict[str, ServerProcess], pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`featureline push --url https://...` takes the workers' --serving-ca/-cert/-key:
    with them the request reaches the mutual-TLS server (whose repo has no PushSource,
    so its answer is the 404 naming the source); without the CA it is a TLS error."""
    from featureline.cli import main

    rows = tmp_path / "rows.json"
    rows.write_text('[{"user_id": 1, "age": 3, "event_timestamp": "2026-03-01T00:00:00"}]')
    argv = ["push", "--source", "nope", "--file", str(rows), "--url", https(servers["native"])]
    mtls = ["--serving-ca", str(pki.ca), "--serving-cert", str(pki.client_cert),
            "--serving-key", str(pki.client_key)]  # fmt: skip
    assert main([*argv, *mtls]) != 0
    assert "'nope'" in capsys.readouterr().err
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "certificate" in err.lower() and "Traceback" not in err, err
