"""The JWKS of `featureline serve --auth-jwks`: a file or an http(s) URL, read at start,
then again in a thread (never on the event loop): in the background every
--auth-jwks-refresh-s, and when a token names a key not in the set (a key rotation), at
most once per --auth-jwks-min-refresh-s.

Only signature keys of asymmetric types are kept (RSA, EC, OKP): a symmetric (`oct`) key
in a public key set would let anyone who reads the set sign tokens, and `use: enc` keys
are not for signatures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWKError

from featureline.errors import BadInputError

log = logging.getLogger("featureline.serving.auth")

# An IdP's key set is a few keys of ~1 KB each; 1 MiB bounds what a broken or hostile
# endpoint can make a worker read.
MAX_JWKS_BYTES = 1024 * 1024
# A fetch runs in a thread, but a request that waits for a rotated key waits this long
# at most; IdPs answer in well under a second.
FETCH_TIMEOUT_S = 5.0
_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


@dataclass(frozen=True)
class Key:
    jwk: PyJWK
    kty: str  # RSA, EC or OKP
    alg: str | None  # the algorithm the JWK names, if it names one


Keys = dict[str | None, Key]  # kid (None: the key has none) -> key


def tls_context(ca_file: str, verify: bool) -> ssl.SSLContext:
    """The client TLS context of Feast's OIDC fetches (feature_store.yaml's oidc):
    verify_ssl false turns checks off, a ca_cert_path is trusted, else the system's CAs."""
    context = ssl.create_default_context(cafile=ca_file or None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _read(source: str, context: ssl.SSLContext | None = None, timeout_s: float = FETCH_TIMEOUT_S) -> bytes:
    if source.startswith(("http://", "https://")):
        request = urllib.request.Request(source, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as reply:  # noqa: S310  # http(s) only, checked above
            data: bytes = reply.read(MAX_JWKS_BYTES + 1)
    else:
        with Path(source).open("rb") as file:
            data = file.read(MAX_JWKS_BYTES + 1)
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"larger than {MAX_JWKS_BYTES} bytes")
    return data


def parse_jwks(document: Any) -> Keys:
    """A JWKS document ({"keys": [...]}) -> its usable signature keys by kid."""
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS (a JSON object with a "keys" list)')
    keys: Keys = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, Mapping) or jwk.get("kty") not in _KEY_TYPES:
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(dict(jwk))
        except PyJWKError as exc:  # an algorithm or curve we cannot verify: skip that key
            log.warning("JWKS key %r skipped: %s", jwk.get("kid"), exc)
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        kid = kid if isinstance(kid, str) else None
        keys[kid] = Key(key, jwk["kty"], alg if isinstance(alg, str) else None)
    if not keys:
        raise ValueError("holds no RSA, EC or OKP signature key")
    return keys


def fetch_jwks(
    source: str, context: ssl.SSLContext | None = None, timeout_s: float = FETCH_TIMEOUT_S
) -> Keys:
    """The keys at `source` (`context`: TLS of an https one; None: the system's CAs);
    BadInputError saying what is wrong, in one line."""
    try:
        return parse_jwks(json.loads(_read(source, context, timeout_s)))
    except (OSError, ValueError) as exc:  # URLError and JSONDecodeError included
        raise BadInputError(f"cannot use the JWKS {source}: {exc}") from None


class KeySet:
    """The keys by kid, and their refresh. Lives in the event loop's thread: a fetch runs
    in the loop's default executor and its keys are installed by a done-callback, back
    in the loop (so nothing here is shared between threads)."""

    def __init__(self, source: str, refresh_s: float, min_refresh_s: float,
                 fetch: Callable[[str], Keys] = fetch_jwks) -> None:  # fmt: skip
        self.source = source
        self.refresh_s = refresh_s
        self.min_refresh_s = min_refresh_s
        self._fetch = fetch
        self.keys: Keys = {}
        self.fetched_at = -float("inf")  # time.monotonic() of the end of the last try
        self.pending: asyncio.Future[Keys] | None = None
        self.on_change: Callable[[], None] = lambda: None  # a key was withdrawn

    def load(self) -> None:
        """Fetch now, in this thread (at start); BadInputError if it fails."""
        try:
            self._install(self._fetch(self.source))
        finally:
            self.fetched_at = time.monotonic()

    def find(self, kid: str | None) -> Key | None:
        if kid is None and len(self.keys) == 1:  # a token without kid, a set of one key
            return next(iter(self.keys.values()))
        return self.keys.get(kid)

    def refresh(self, unknown_kid: bool) -> asyncio.Future[Keys] | None:
        """Start a fetch in a thread when due (periodic, or for an unknown kid) and none
        is under way; the fetch under way, if any. Without an event loop (tools, unit
        tests) a due fetch runs in this thread and None comes back."""
        if self.pending is not None:
            return self.pending
        wait = self.min_refresh_s if unknown_kid else self.refresh_s
        if time.monotonic() - self.fetched_at < wait:
            return None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            try:
                self.load()
            except BadInputError as exc:
                log.warning("%s; keeping the %d key(s) read before", exc, len(self.keys))
            return None
        self.pending = loop.run_in_executor(None, self._fetch, self.source)
        self.pending.add_done_callback(self._fetched)
        return self.pending

    def _fetched(self, future: asyncio.Future[Keys]) -> None:
        self.pending = None
        self.fetched_at = time.monotonic()
        if future.cancelled():  # the loop is closing
            return
        exc = future.exception()
        if exc is not None:
            log.warning("%s; keeping the %d key(s) read before", exc, len(self.keys))
            return
        self._install(future.result())

    def _install(self, keys: Keys) -> None:
        withdrawn = self.keys.keys() - keys.keys()
        self.keys = keys
        if withdrawn:
            log.info("JWKS %s: key(s) %s withdrawn", self.source, sorted(map(str, withdrawn)))
            self.on_change()
