"""Signed tokens checked by an independent implementation: PyJWT (with ``cryptography``)
verifies a token minted by the real server against the JWKS that server serves, and
refuses what any careful verifier refuses. The same forgeries sent to the server's own
verify are refused there too."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Tuple

import httpx
import jwt
import pytest
from jwt import PyJWKClient

from conftest import KeyMaker
from helpers import Server


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def mint(server: Server, key: str, **body: Any) -> Dict[str, Any]:
    r = httpx.post(f"{server.url}/v1/tokens", json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    answer: Dict[str, Any] = r.json()
    return answer


def server_verify(server: Server, token: str, **body: Any) -> str:
    r = httpx.post(
        f"{server.url}/v1/keys/verify",
        json={"key": token, **body},
        headers={"authorization": f"Bearer {server.root_key}"},
    )
    assert r.status_code == 200, r.text
    code: str = r.json()["code"]
    return code


def parts(token: str) -> Tuple[Dict[str, Any], Dict[str, Any], str]:
    head, payload, signature = token.split(".")
    pad = lambda s: s + "=" * (-len(s) % 4)  # noqa: E731
    return (
        json.loads(base64.urlsafe_b64decode(pad(head))),
        json.loads(base64.urlsafe_b64decode(pad(payload))),
        signature,
    )


def test_pyjwt_verifies_a_token_against_the_served_jwks(server: Server, make_key: KeyMaker) -> None:
    key, key_id = make_key(scopes=["read", "write"])
    minted = mint(server, key, scopes=["read"], audience="billing", ttl_seconds=120)
    token = minted["token"]

    jwks = PyJWKClient(f"{server.url}/.well-known/jwks.json")
    signing_key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, signing_key.key, algorithms=["EdDSA"], audience="billing")
    assert claims["sub"] == key_id
    assert claims["scopes"] == ["read"]
    assert claims["exp"] - claims["iat"] == 120
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "EdDSA" and header["kid"] == minted["kid"]

    # PyJWT refuses another audience, and an expired token.
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(token, signing_key.key, algorithms=["EdDSA"], audience="search")
    short = mint(server, key, ttl_seconds=1)["token"]
    time.sleep(2.05)  # exp is in whole seconds: one second, and up to one more
    with pytest.raises(jwt.ExpiredSignatureError):
        jwt.decode(short, signing_key.key, algorithms=["EdDSA"])
    assert server_verify(server, short) == "EXPIRED"


def test_forgeries_are_refused_by_pyjwt_and_by_the_server(server: Server, make_key: KeyMaker) -> None:
    key, _ = make_key(scopes=["read"])
    token = mint(server, key)["token"]
    header, payload, signature = parts(token)
    jwks = PyJWKClient(f"{server.url}/.well-known/jwks.json")
    public = jwks.get_signing_key_from_jwt(token).key
    assert server_verify(server, token) == "VALID"

    # A tampered payload: wider scopes under the original signature.
    widened = dict(payload, scopes=["read", "admin"])
    tampered = ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(widened).encode()), signature]
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(tampered, public, algorithms=["EdDSA"])
    assert server_verify(server, tampered) == "NOT_FOUND"

    # alg: none, unsigned.
    none = ".".join(
        [b64url(json.dumps({"alg": "none", "kid": header["kid"]}).encode()), b64url(json.dumps(payload).encode()), ""]
    )
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(none, public, algorithms=["EdDSA"])
    assert server_verify(server, none) in ("NOT_FOUND", "MALFORMED")

    # HS256 keyed with the public key (the JWKS's own bytes), the classic confusion.
    jwk = next(k for k in httpx.get(f"{server.url}/.well-known/jwks.json").json()["keys"] if k["kid"] == header["kid"])
    secret = base64.urlsafe_b64decode(jwk["x"] + "=" * (-len(jwk["x"]) % 4))
    hs_head = b64url(json.dumps({"alg": "HS256", "kid": header["kid"], "typ": "JWT"}).encode())
    hs_body = b64url(json.dumps(payload).encode())
    mac = hmac.new(secret, f"{hs_head}.{hs_body}".encode(), hashlib.sha256).digest()
    confused = f"{hs_head}.{hs_body}.{b64url(mac)}"
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(confused, public, algorithms=["EdDSA"])
    assert server_verify(server, confused) == "NOT_FOUND"

    # A kid no signing key has.
    wrong_kid = ".".join(
        [b64url(json.dumps(dict(header, kid="not-a-key")).encode()), token.split(".")[1], signature]
    )
    with pytest.raises(jwt.PyJWKClientError):
        jwks.get_signing_key_from_jwt(wrong_kid)
    assert server_verify(server, wrong_kid) == "NOT_FOUND"

    # An audience the verifier is not.
    aud_token = mint(server, key, audience="billing")["token"]
    assert server_verify(server, aud_token) == "NOT_FOUND"
    assert server_verify(server, aud_token, audience="billing") == "VALID"
