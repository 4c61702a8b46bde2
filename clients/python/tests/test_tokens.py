"""Signed tokens through the Python client: checked offline against the server's JWKS,
answered offline once the server vouched for their key, and refused within a second of
the key's revocation by a client following the change stream."""

from __future__ import annotations

import base64
import time
from typing import Any, Dict, Iterator

import httpx
import pytest

import keyhaven
from conftest import KeyMaker
from helpers import Server, limit_one


@pytest.fixture
def cached(server: Server) -> Iterator[keyhaven.Client]:
    client = keyhaven.Client(server.url, server.root_key, cache=True)
    yield client
    client.close()


def mint(server: Server, key: str, **body: Any) -> str:
    r = httpx.post(f"{server.url}/v1/tokens", json=body, headers={"authorization": f"Bearer {key}"})
    assert r.status_code == 201, r.text
    token: str = r.json()["token"]
    return token


def until_vouched(client: keyhaven.Client, token: str, timeout: float = 5.0) -> keyhaven.VerifyResult:
    deadline = time.monotonic() + timeout
    while True:
        result = client.verify(token)
        assert result.valid and result.token, result.code
        if result.cached:
            return result
        assert time.monotonic() < deadline, "the token was never answered offline"
        time.sleep(0.002)


def test_tokens_are_answered_offline_and_refused_within_a_second_of_revocation(
    cached: keyhaven.Client, admin: keyhaven.Client, make_key: KeyMaker, server: Server
) -> None:
    assert keyhaven.tokens.offline_available()
    key, key_id = make_key(scopes=["read", "write"])
    first = mint(server, key, scopes=["read"])
    until_vouched(cached, first)
    # Another token of the same key: offline at once, with its own scopes.
    second = mint(server, key, scopes=["write"])
    answer = cached.verify(second)
    assert answer.cached and answer.valid and answer.token and answer.key_id == key_id
    assert answer.scopes == ("write",)
    refused = cached.verify(second, scopes=["read"])
    assert refused.code == "INSUFFICIENT_SCOPES" and not refused.valid

    # A forgery (the first token's payload under the second's signature) is refused.
    head, _, signature = second.split(".")
    forged = f"{head}.{first.split('.')[1]}.{signature}"
    assert cached.verify(forged).code == "NOT_FOUND"

    started = time.perf_counter()
    admin.revoke_key(key_id)
    while (result := cached.verify(second)).valid:
        assert time.perf_counter() - started < 1.0, "still valid 1 s after its key's revocation"
        time.sleep(0.0005)
    assert result.code == "REVOKED" and not result.cached
    assert cached.verify(first).code == "REVOKED"


def test_expiry_and_audience_are_checked_without_the_server(
    server: Server, make_key: KeyMaker
) -> None:
    key, _ = make_key()
    token = mint(server, key, audience="billing", ttl_seconds=1)
    calls: Dict[str, int] = {"verify": 0}

    def count(request: httpx.Request) -> None:
        if request.url.path == "/v1/keys/verify":
            calls["verify"] += 1

    with keyhaven.Client(server.url, server.root_key) as client:
        client._http.event_hooks["request"].append(count)  # observe, not change, the calls
        assert client.verify(token).code == "NOT_FOUND"
        assert client.verify(token, audience="search").code == "NOT_FOUND"
        assert calls["verify"] == 0, "refused offline"
        assert client.verify(token, audience="billing").valid
        assert calls["verify"] == 1, "without a cache, VALID is the server's to say"
        time.sleep(2.05)
        assert client.verify(token, audience="billing").code == "EXPIRED"
        assert calls["verify"] == 1


async def test_the_async_client_checks_tokens_too(server: Server, make_key: KeyMaker) -> None:
    key, key_id = make_key(ratelimits=limit_one())
    token = mint(server, key)
    async with keyhaven.AsyncClient(server.url, server.root_key, cache=True) as client:
        first = await client.verify(token)
        assert first.valid and first.token and first.key_id == key_id
        # A limited key's tokens count against it: each call asks the server.
        second = await client.verify(token)
        assert second.code == "RATE_LIMITED" and not second.cached
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        assert (await client.verify(tampered)).code == "NOT_FOUND"


def test_a_deeply_nested_header_is_malformed_not_a_crash(server: Server) -> None:
    header = '{"a":' + "[" * 5000 + "]" * 5000 + "}"
    token = base64.urlsafe_b64encode(header.encode()).decode().rstrip("=") + ".e30.AA"
    assert token.startswith("eyJ")
    with keyhaven.Client(server.url, server.root_key) as client:
        assert client.verify(token).code in ("MALFORMED", "NOT_FOUND")
