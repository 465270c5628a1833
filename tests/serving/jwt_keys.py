"""Keys, key sets and tokens made in the tests (an IdP of our own) for the JWT tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/"
AUDIENCE = "featureline-serving"
CLAIM_MAP = """# claim value       access
features:all        *
features:svc        svc           # one feature service
team-profile        profile,pair  # a group: two views
"""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        algorithm = RSAAlgorithm if self.alg.startswith(("RS", "PS")) else ECAlgorithm
        jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "model-1", "iat": now, "exp": now + 600,
                   **claims}  # fmt: skip
        payload = {k: v for k, v in payload.items() if v is not None}  # None: leave the claim out
        return jwt.encode(
            payload, self.private, algorithm=self.alg, headers={"kid": self.kid, **(headers or {})}
        )


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk() for k in keys]}


def unsigned(**claims: Any) -> str:
    """A token with alg `none` (no signature), claims otherwise good."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 600, **claims}
    return jwt.encode(payload, None, algorithm="none")


DISCOVERY_PATH = "/realms/test/.well-known/openid-configuration"


@contextmanager
def jwks_server(
    document: dict[str, Any], discovery: dict[str, Any] | None = None
) -> Iterator[tuple[str, dict[str, Any], list[float]]]:
    """A JWKS URL on loopback serving `document` (mutable: a test rotates keys in it), and
    the times of the fetches it answered. With `discovery`, DISCOVERY_PATH serves it as
    an OIDC discovery document, its jwks_uri set to this JWKS URL unless it has a
    `jwks_uri` key already (None: leave it out)."""
    fetches: list[float] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if discovery is not None and self.path == DISCOVERY_PATH:
                jwks_uri = {"jwks_uri": f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"}
                shown = {**jwks_uri, **discovery}
                body = json.dumps({k: v for k, v in shown.items() if v is not None}).encode()
            else:
                body = json.dumps(document).encode()
                fetches.append(time.monotonic())
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", document, fetches
    finally:
        server.shutdown()
        server.server_close()
