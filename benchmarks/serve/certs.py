"""A throwaway PKI for TLS runs of `featureline serve` (`bench serve --tls`, the TLS
tests): a CA, a server certificate for 127.0.0.1 and localhost, a client certificate
from that CA, and a client certificate from another CA (which a server must refuse).

EC P-256 keys, as current deployments issue: the server's signature per handshake costs
~0.03 ms against ~2.7 ms for RSA 3072 (`openssl speed ecdsap256 rsa3072` on this
2-core machine), so a handshake is no larger a share of a run than in production.
Valid from an hour ago (clock skew) for 2 days.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Pki:
    ca: Path  # PEM certificate of the CA that signed the server and `client`
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # another CA, and a client certificate it signed
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> Any:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec

    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: str, key: Any, issuer: tuple[str, Any] | None, usage: str) -> Any:
    """A certificate for `subject`; `issuer` (name, key) or self-signed; usage: ca, server, client."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=usage == "ca", path_length=None), critical=True)
    )
    if usage == "server":
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    elif usage == "client":
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
    else:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )  # fmt: skip
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, certificate: Any = None, key: Any = None) -> Path:
    from cryptography.hazmat.primitives import serialization

    if certificate is not None:
        path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
    return path


def make_pki(directory: Path) -> Pki:
    """Write the certificates and keys into `directory` (created); their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for ca_name, prefix in (("featureline test CA", ""), ("another CA", "other_")):
        ca_key = _key()
        ca_cert = _certificate(ca_name, ca_key, None, "ca")
        out[f"{prefix}ca"] = _write(directory / f"{prefix}ca.pem", ca_cert)
        client_key = _key()
        client = _certificate(f"{prefix}client", client_key, (ca_name, ca_key), "client")
        out[f"{prefix}client_cert"] = _write(directory / f"{prefix}client.pem", client)
        out[f"{prefix}client_key"] = _write(directory / f"{prefix}client-key.pem", key=client_key)
        if not prefix:
            server_key = _key()
            server = _certificate("localhost", server_key, (ca_name, ca_key), "server")
            out["server_cert"] = _write(directory / "server.pem", server)
            out["server_key"] = _write(directory / "server-key.pem", key=server_key)
    return Pki(**out)
