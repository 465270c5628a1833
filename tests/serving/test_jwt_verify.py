"""The JWT verification logic without sockets: signature, issuer, audience, times,
algorithms, the claim map, the token cache and the key set's refresh (its fetch is a
function here; tests/serving/test_jwt_auth.py fetches over HTTP from a served process)."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import jwt
import pytest
from jwt_keys import AUDIENCE, CLAIM_MAP, ISSUER, SigningKey, ec_key, jwks, rsa_key, unsigned

from featureline.errors import BadInputError
from featureline.serving_api.auth import (
    JwtSettings,
    KeysPending,
    TokenAuth,
    after_keys,
    challenge,
    check,
)
from featureline.serving_api.auth_jwks import Keys, KeySet, fetch_jwks, parse_jwks
from featureline.serving_api.auth_jwt import JwtAuth, TokenCache, claim_values
from featureline.serving_api.cli import configure_jwt, jwt_settings
from featureline.serving_api.limits import ForbiddenError, Limits, UnauthenticatedError
from featureline.serving_api.plans import ReadPlan

RSA, EC, OTHER = rsa_key("rsa-1"), ec_key("ec-1"), rsa_key("rsa-1")  # OTHER: same kid, not in the set


class Idp:
    """A key set whose fetches are counted; `document` may change (a rotation)."""

    def __init__(self, *keys: SigningKey) -> None:
        self.document = jwks(*keys)
        self.fetches = 0

    def fetch(self, source: str) -> Keys:
        self.fetches += 1
        return parse_jwks(self.document)


def _auth(tmp_path: Path, idp: Idp, *, min_refresh_s: float = 30.0, claim: str = "scope",
          cache: int = 10_000) -> JwtAuth:  # fmt: skip
    claim_map = tmp_path / "claims.txt"
    claim_map.write_text(CLAIM_MAP)
    settings = JwtSettings("idp", ISSUER, (AUDIENCE,), str(claim_map), claim=claim, leeway_s=5)
    limits = Limits(jwt_cache_tokens=cache, jwks_min_refresh_s=min_refresh_s)
    keys = KeySet("idp", limits.jwks_refresh_s, min_refresh_s, fetch=idp.fetch)
    keys.load()
    return JwtAuth(settings, limits, keys)


def _scope(auth: JwtAuth, token: str) -> frozenset[str]:
    return TokenAuth({}, auth).scope(f"Bearer {token}")


@pytest.fixture
def auth(tmp_path: Path) -> JwtAuth:
    return _auth(tmp_path, Idp(RSA, EC))


def test_good_rsa_and_ec_tokens_map_their_scopes(auth: JwtAuth) -> None:
    assert _scope(auth, RSA.token(scope="openid features:svc")) == {"svc"}
    assert _scope(auth, EC.token(scp=["features:all"])) == {"*"}
    assert _scope(auth, RSA.token(scope="openid profile")) == frozenset()  # nothing mapped


UNKNOWN = rsa_key("rsa-9")
# Made when the test runs (a token made at collection could expire before a long suite gets here).
REFUSED: list[tuple[Callable[[], str], str]] = [
    (lambda: RSA.token(exp=int(time.time()) - 60), "the token has expired"),
    (lambda: RSA.token(nbf=int(time.time()) + 60), "not valid yet"),
    (lambda: RSA.token(aud="another-api"), f"audience is not {AUDIENCE}"),
    (lambda: RSA.token(iss="https://evil.test/"), f"issuer is not {ISSUER}"),
    (lambda: RSA.token(exp=None), "the token has no exp claim"),
    (lambda: OTHER.token(), "signature does not verify"),  # the set's kid, another key
    (lambda: UNKNOWN.token(), "unknown signing key rsa-9"),
    (lambda: unsigned(), "algorithm none is not allowed"),
    (lambda: EC.token(headers={"kid": "rsa-1"}), "rsa-1 is an RS256 key, the token says ES256"),
    (lambda: "a.b.c", "malformed token"),
]


@pytest.mark.parametrize(("token", "reason"), REFUSED, ids=[r[1][:24] for r in REFUSED])
def test_bad_tokens_are_401_saying_why(auth: JwtAuth, token: Callable[[], str], reason: str) -> None:
    with pytest.raises(UnauthenticatedError, match=reason):
        _scope(auth, token())


def test_hmac_signed_with_the_public_key_is_refused(auth: JwtAuth) -> None:
    """The classic key-confusion attack: HS256 keyed with the RSA public key's PEM."""
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode())
    body = base64.urlsafe_b64encode(json.dumps({"iss": ISSUER, "aud": AUDIENCE}).encode())
    with pytest.raises(UnauthenticatedError, match="algorithm HS256 is not allowed"):
        _scope(auth, f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}.c2ln")
    with pytest.raises(ValueError, match="asymmetric only"):
        JwtAuth(JwtSettings("x", ISSUER, (AUDIENCE,), "x", algorithms=("HS256",)), Limits())


def test_hostile_tokens_are_401_never_an_error(auth: JwtAuth) -> None:
    nested = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    with pytest.raises(UnauthenticatedError, match="malformed token"):
        _scope(auth, f"{nested}.e30.c2ln")  # JSON nested past the recursion limit
    signed = jwt.PyJWS().encode(b"[" * 5000, RSA.private, "RS256", headers={"kid": "rsa-1"})
    with pytest.raises(UnauthenticatedError, match="malformed token"):
        _scope(auth, signed)  # the same in the claims, under a good signature
    with pytest.raises(UnauthenticatedError, match="larger than 16384 bytes"):
        _scope(auth, RSA.token(scope="x" * 20_000))


def test_claims_scope_scp_groups_and_nested(tmp_path: Path) -> None:
    claims: dict[str, Any] = {"scope": "a b", "scp": ["c"], "groups": ["g1", 7, "g2"],
                              "realm_access": {"roles": ["r"]}, "https://x.test/groups": "u v"}  # fmt: skip
    assert claim_values(claims, "scope") == ["a", "b", "c"]
    assert claim_values(claims, "groups") == ["g1", "g2"]
    assert claim_values(claims, "realm_access.roles") == ["r"]
    assert claim_values(claims, "https://x.test/groups") == ["u", "v"]
    assert claim_values(claims, "missing.path") == []
    groups = _auth(tmp_path, Idp(RSA), claim="groups")
    assert _scope(groups, RSA.token(groups=["team-profile", "other"])) == {"profile", "pair"}


def test_one_access_rule_for_static_tokens_and_jwts(tmp_path: Path, auth: JwtAuth) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("static-1 svc\n")
    both = TokenAuth.from_file(tokens, auth)
    assert both.scope("Bearer static-1") == {"svc"}
    jwt_scope = both.scope(f"Bearer {RSA.token(scope='openid features:svc')}")
    assert jwt_scope == {"svc"}
    plan = cast(ReadPlan, SimpleNamespace(views=["profile", "ratio"]))
    with pytest.raises(ForbiddenError, match="may not read feature service 'other'"):
        check(jwt_scope, plan, "other")
    with pytest.raises(ForbiddenError, match=r"may not read view\(s\) profile, ratio"):
        check(jwt_scope, plan, None)
    with pytest.raises(UnauthenticatedError, match="invalid bearer token"):
        both.scope("Bearer static-2")
    with pytest.raises(UnauthenticatedError, match="must be `Bearer <token>`"):
        both.scope("Basic dXNlcg==")


def test_challenge_header() -> None:
    assert challenge(None) == 'Bearer realm="featureline"'
    assert challenge('bad "token"\r\n') == (
        'Bearer realm="featureline", error="invalid_token", error_description="bad \'token\'\'\'"'
    )


def test_a_verified_token_is_checked_once_until_its_exp(
    auth: JwtAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda token, *a, **k: calls.append(token) or decode(token, *a, **k))
    token = RSA.token(scope="features:svc")
    assert _scope(auth, token) == _scope(auth, token) == {"svc"}
    assert len(calls) == 1
    exp = int(time.time()) - 3  # expired, but within the 5 s leeway
    soon = RSA.token(scope="features:svc", exp=exp)
    assert _scope(auth, soon) == _scope(auth, soon) == {"svc"}
    assert len(calls) == 2
    monkeypatch.setattr(time, "time", lambda: exp + 5.5)  # the cache's clock: past exp + leeway
    _scope(auth, soon)
    assert len(calls) == 3  # out of the cache, so checked again


def test_cache_is_a_bounded_lru() -> None:
    cache = TokenCache(2)
    for key in (b"a", b"b"):
        cache.put(key, frozenset({key.decode()}), 100.0)
    assert cache.get(b"a", 1.0) == {"a"}  # a is now the most recent
    cache.put(b"c", frozenset({"c"}), 100.0)
    assert cache.get(b"b", 1.0) is None and cache.get(b"a", 1.0) == {"a"}
    assert cache.get(b"a", 100.0) is None and len(cache.entries) == 1
    off = TokenCache(0)
    off.put(b"a", frozenset(), 100.0)
    assert off.get(b"a", 1.0) is None


def test_a_withdrawn_key_clears_the_cache(tmp_path: Path) -> None:
    idp = Idp(RSA, EC)
    auth = _auth(tmp_path, idp)
    token = EC.token(scope="features:svc")
    _scope(auth, token)
    idp.document = jwks(RSA)
    auth.keys.fetched_at -= auth.keys.refresh_s  # due: the periodic refresh runs on the next call
    with pytest.raises(UnauthenticatedError, match="unknown signing key ec-1"):
        _scope(auth, token)


def test_rotation_waits_for_the_fetch_in_a_thread_and_is_rate_limited(tmp_path: Path) -> None:
    idp = Idp(RSA)
    auth = _auth(tmp_path, idp, min_refresh_s=0.2)
    new, made_up = ec_key("ec-2"), ec_key("made-up").token()

    async def main() -> None:
        time.sleep(0.25)  # past the minimum interval since the start's fetch
        idp.document = jwks(RSA, new)
        with pytest.raises(KeysPending) as info:
            _scope(auth, new.token(scope="features:all"))
        assert await after_keys(info.value, lambda: _scope(auth, new.token(scope="features:all"))) == {"*"}
        assert idp.fetches == 2
        with pytest.raises(UnauthenticatedError) as refused:  # unknown, but fetched < 0.2 s ago
            _scope(auth, made_up)
        assert not isinstance(refused.value, KeysPending) and idp.fetches == 2

    asyncio.run(main())


def test_key_set_parsing_and_bad_sources(tmp_path: Path) -> None:
    oct_key = {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}
    enc = {**EC.jwk(), "kid": "enc", "use": "enc"}
    assert set(parse_jwks({"keys": [RSA.jwk(), oct_key, enc]})) == {"rsa-1"}
    with pytest.raises(ValueError, match="no RSA, EC or OKP signature key"):
        parse_jwks({"keys": [oct_key]})
    bad = tmp_path / "jwks.json"
    for text, reason in [
        ("{", "Expecting"),
        ('{"keys": 1}', "not a JWKS"),
        ("x" * (1024 * 1024 + 1), "larger"),
    ]:
        bad.write_text(text)
        with pytest.raises(BadInputError, match=re.escape(f"cannot use the JWKS {bad}: ") + f".*{reason}"):
            fetch_jwks(str(bad))
    with pytest.raises(BadInputError, match="No such file"):
        fetch_jwks(str(tmp_path / "missing.json"))


def test_flags_make_the_settings_or_say_what_is_wrong(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    configure_jwt(parser)
    assert jwt_settings(parser.parse_args([])) is None
    with pytest.raises(BadInputError, match="--auth-jwks needs --auth-issuer, --auth-audience"):
        jwt_settings(parser.parse_args(["--auth-jwks", "keys.json"]))
    base = ["--auth-jwks", "https://idp.test/keys", "--auth-issuer", ISSUER, "--auth-audience", "a, b",
            "--auth-claim-map", "claims.txt"]  # fmt: skip
    settings = jwt_settings(parser.parse_args([*base, "--auth-algorithms", "ES256"]))
    assert settings.audience == ("a", "b") and settings.algorithms == ("ES256",)
    assert settings.jwks == "https://idp.test/keys" and Path(settings.claim_map).is_absolute()
    for flags, reason in [(["--auth-algorithms", "RS256,HS256"], "HS256"),
                          (["--auth-leeway-s", "-1"], "leeway"),
                          (["--auth-jwks-min-refresh-s", "0"], "refresh")]:  # fmt: skip
        with pytest.raises(BadInputError, match=reason):
            jwt_settings(parser.parse_args([*base, *flags]))
