"""TLS for the serving ports and their clients: ssl contexts and gRPC credentials from
certificate files.

Server (`featureline serve --tls-cert F --tls-key F [--tls-client-ca F]`, or
FEATURELINE_TLS_CERT / _KEY / _CLIENT_CA): both ports speak TLS 1.2 or 1.3 only, the
REST port offers ALPN `http/1.1` and the gRPC port `h2`; with a client CA every client
must present a certificate that CA signed (mutual TLS), on both ports. Files are
checked once at start (`ServerTls.check`): a missing or unreadable file, or a key that
is not the certificate's, stops `featureline serve` with one line.

Client (the SDK, the inference workers, the bench): `ClientTls(ca=..., cert=..., key=...)`
gives gRPC channel credentials and an ssl context (httpx, raw sockets); `ca` empty
trusts the system's roots.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from featureline.errors import BadInputError

ALPN_GRPC = ("h2",)
ALPN_HTTP = ("http/1.1",)
# TLS 1.2 ciphers: forward-secret AEAD only. HTTP/2 (RFC 7540 9.2.2) forbids every
# non-ephemeral or non-AEAD TLS 1.2 suite, and Python's default list still has CBC
# suites (ECDH+AES), which an h2 client may answer with INADEQUATE_SECURITY. TLS 1.3
# suites are all AEAD and are not affected by this string.
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


def _read(path: str, what: str) -> bytes:
    """The file's bytes, or a one-line BadInputError naming the file and the setting."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise BadInputError(f"cannot read the {what} {path!r}: {exc.strerror or exc}") from None


def _tls_error(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)


@dataclass(frozen=True)
class ServerTls:
    """Certificate files of `featureline serve`; `cert` empty: plaintext."""

    cert: str = ""  # PEM: the server certificate, then any intermediates
    key: str = ""  # PEM private key of `cert`
    client_ca: str = ""  # PEM CA(s) that sign client certificates: mutual TLS when set

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    @property
    def mutual(self) -> bool:
        return bool(self.client_ca)

    def check(self) -> None:
        """Refuse, in one line, what would fail in the workers: half a pair, a missing
        or unreadable file, a key that is not the certificate's, a bad CA file."""
        if not self.cert and not self.key and not self.client_ca:
            return
        if not self.cert or not self.key:
            raise BadInputError(
                "TLS needs both --tls-cert and --tls-key (FEATURELINE_TLS_CERT / FEATURELINE_TLS_KEY)"
                + ("; --tls-client-ca alone does not turn TLS on" if self.client_ca else "")
            )
        self.context(ALPN_HTTP)

    def context(self, alpn: Sequence[str]) -> ssl.SSLContext:
        """A server context offering `alpn`; BadInputError naming the file on failure."""
        _read(self.cert, "TLS certificate (--tls-cert)")
        _read(self.key, "TLS key (--tls-key)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(_TLS12_CIPHERS)
        # Renegotiation is a CPU amplifier for a hostile client (and forbidden by h2).
        ctx.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as exc:
            raise BadInputError(
                f"TLS certificate {self.cert!r} and key {self.key!r} are not a PEM certificate "
                f"and its private key ({_tls_error(exc)})"
            ) from None
        if self.client_ca:
            _read(self.client_ca, "TLS client CA (--tls-client-ca)")
            try:
                ctx.load_verify_locations(cafile=self.client_ca)
            except ssl.SSLError as exc:
                raise BadInputError(
                    f"TLS client CA {self.client_ca!r} is not a PEM certificate ({_tls_error(exc)})"
                ) from None
            ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.set_alpn_protocols(list(alpn))
        return ctx

    def grpc_credentials(self) -> Any:
        """grpcio server credentials (`--grpc-server aio`). grpcio negotiates ALPN h2
        itself and its minimum is TLS 1.2 (grpc core's default), as for our servers."""
        import grpc

        pair = (_read(self.key, "TLS key (--tls-key)"), _read(self.cert, "TLS certificate (--tls-cert)"))
        ca = _read(self.client_ca, "TLS client CA (--tls-client-ca)") if self.client_ca else None
        return grpc.ssl_server_credentials([pair], root_certificates=ca, require_client_auth=ca is not None)


@dataclass(frozen=True)
class ClientTls:
    """How a client reaches a TLS `featureline serve`."""

    ca: str = ""  # PEM CA(s) to trust for the server's certificate; "": the system's roots
    cert: str = ""  # PEM client certificate, for a server with --tls-client-ca
    key: str = ""  # its private key
    # The name checked in the server's certificate when it is not the target's host
    # (gRPC only: grpc.ssl_target_name_override).
    server_name: str = ""

    def __post_init__(self) -> None:
        if bool(self.cert) != bool(self.key):
            raise BadInputError("a TLS client certificate needs its key, and a key its certificate")

    def grpc_credentials(self) -> Any:
        import grpc

        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca, "TLS CA") if self.ca else None,
            private_key=_read(self.key, "TLS client key") if self.key else None,
            certificate_chain=_read(self.cert, "TLS client certificate") if self.cert else None,
        )

    def grpc_options(self) -> list[tuple[str, Any]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []

    def ssl_context(self, alpn: Sequence[str] = ALPN_HTTP) -> ssl.SSLContext:
        """A verifying client context (httpx `verify=`, asyncio connections)."""
        if self.ca:
            _read(self.ca, "TLS CA")
        ctx = ssl.create_default_context(cafile=self.ca or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert:
            _read(self.cert, "TLS client certificate")
            try:
                ctx.load_cert_chain(self.cert, self.key)
            except ssl.SSLError as exc:
                raise BadInputError(
                    f"TLS client certificate {self.cert!r} and key {self.key!r} do not match "
                    f"({_tls_error(exc)})"
                ) from None
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def as_client_tls(tls: ClientTls | bool | None) -> ClientTls | None:
    """The SDK's `tls=` argument: True is TLS with the system's roots."""
    if tls is True:
        return ClientTls()
    return tls or None


# Substrings of grpc core's error details when the TLS handshake fails (grpc 1.85:
# "Ssl handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: ... CERTIFICATE_VERIFY_FAILED").
_HANDSHAKE_MARKS = ("handshake", "ssl_error", "certificate_verify", "tsi_", "wrong_version_number")


def is_tls_failure(detail: str | None) -> bool:
    text = (detail or "").lower()
    return any(mark in text for mark in _HANDSHAKE_MARKS)
