"""FastAPI: the dependency over a real socket (uvicorn), with an AsyncClient and with a
sync Client: 200 with the caller, 401 (missing, unknown, revoked), 403, 429 with
Retry-After, 503 when Keyhaven cannot be reached (and the explicit fail-open)."""

from __future__ import annotations

import socket
from typing import Iterator

import httpx
import pytest

import keyhaven
from conftest import KeyMaker
from fastapi_app import build_app
from helpers import Server, limit_one, problem_of, refused_within_a_second, unknown_key
from servers import AsgiServer

INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'


@pytest.fixture(scope="module")
def app_url(server: Server) -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    running = AsgiServer(build_app(server.url, server.root_key, dead))
    yield running.url
    running.close()


@pytest.fixture
def http(app_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=app_url, timeout=10) as client:
        yield client


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(params=["async", "sync"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_valid_key_reaches_the_route_with_its_identity(
    http: httpx.Client, flavour: str, admin: keyhaven.Client, keyspace: keyhaven.Keyspace
) -> None:
    owner = admin.create_owner(f"fa_{keyspace['prefix']}")
    created = admin.create_key(keyspace["id"], owner_id=owner["id"], scopes=["orders:*"])
    for _ in range(3):  # first from the server, then (once the stream vouches) cached
        response = http.get(f"/{flavour}/orders", headers=bearer(created["key"]))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "key_id": created["key_id"], "keyspace_id": keyspace["id"], "owner_id": owner["id"],
            "owner_external_id": owner["external_id"], "scopes": ["orders:*"], "ratelimits": [],
            "remaining": None,
        }
    via_header = http.get(f"/{flavour}/orders", headers={"X-API-Key": created["key"]})
    assert via_header.status_code == 200


def test_missing_unknown_and_revoked_keys_are_401(
    http: httpx.Client, flavour: str, admin: keyhaven.Client, keyspace: keyhaven.Keyspace, make_key: KeyMaker
) -> None:
    missing = http.get(f"/{flavour}/orders")
    assert missing.status_code == 401
    assert problem_of(missing)["code"] == "missing_key"
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'

    key, _ = make_key(scopes=["orders:read"])
    in_query = http.get(f"/{flavour}/orders", params={"api_key": key, "key": key})
    assert in_query.status_code == 401 and problem_of(in_query)["code"] == "missing_key"

    unknown = http.get(f"/{flavour}/orders", headers=bearer(unknown_key(keyspace["prefix"])))
    assert unknown.status_code == 401
    assert problem_of(unknown)["code"] == "not_found"
    assert unknown.headers["www-authenticate"] == INVALID_TOKEN

    garbled = http.get(f"/{flavour}/orders", headers=bearer("not-a-key"))
    assert garbled.status_code == 401 and problem_of(garbled)["code"] == "malformed"

    revoked_key, revoked_id = make_key(scopes=["orders:read"])
    assert http.get(f"/{flavour}/orders", headers=bearer(revoked_key)).status_code == 200
    admin.revoke_key(revoked_id)
    # The app's client is cached: the revocation reaches it through the change stream,
    # within a second (usually a few milliseconds).
    refused = refused_within_a_second(lambda: http.get(f"/{flavour}/orders", headers=bearer(revoked_key)))
    assert refused.status_code == 401
    body = problem_of(refused)
    assert body["code"] == "revoked" and body["title"] == "The API key has been revoked"
    assert refused.headers["www-authenticate"] == INVALID_TOKEN


def test_missing_scope_is_403(http: httpx.Client, flavour: str, make_key: KeyMaker) -> None:
    key, _ = make_key(scopes=["orders:write", "profile"])
    for _ in range(3):  # the server's answer, then the cached identity decided locally
        response = http.get(f"/{flavour}/orders", headers=bearer(key))
        assert response.status_code == 403
        assert problem_of(response)["code"] == "insufficient_scopes"
        assert "www-authenticate" not in response.headers
    assert http.get(f"/{flavour}/any", headers=bearer(key)).status_code == 200


def test_exhausted_limit_is_429_with_retry_after(http: httpx.Client, flavour: str, make_key: KeyMaker) -> None:
    key, _ = make_key(scopes=["orders:read"], ratelimits=limit_one())
    first = http.get(f"/{flavour}/orders", headers=bearer(key))
    assert first.status_code == 200 and first.json()["ratelimits"] == [0]
    assert first.headers["ratelimit-policy"] == '"requests";q=1;w=60'
    assert first.headers["ratelimit"].startswith('"requests";r=0;t=')
    limited = http.get(f"/{flavour}/orders", headers=bearer(key))
    assert limited.status_code == 429
    assert problem_of(limited)["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-policy"] == '"requests";q=1;w=60'

    quota_key, _ = make_key(scopes=["orders:read"], quota={"remaining": 1})
    assert http.get(f"/{flavour}/orders", headers=bearer(quota_key)).json()["remaining"] == 0
    exhausted = http.get(f"/{flavour}/orders", headers=bearer(quota_key))
    assert exhausted.status_code == 429 and problem_of(exhausted)["code"] == "usage_exceeded"


def test_configured_key_header(http: httpx.Client, make_key: KeyMaker) -> None:
    key, key_id = make_key()
    response = http.get("/custom-header", headers={"X-Acme-Key": key, "Authorization": "Bearer something-else"})
    assert response.status_code == 200 and response.json()["key_id"] == key_id
    missing = http.get("/custom-header")
    assert "X-Acme-Key" in problem_of(missing)["detail"]


def test_unreachable_keyhaven_fails_closed_unless_told_otherwise(http: httpx.Client, make_key: KeyMaker) -> None:
    key, _ = make_key()
    down = http.get("/down", headers=bearer(key))
    assert down.status_code == 503 and problem_of(down)["code"] == "unavailable"
    assert key not in down.text
    opened = http.get("/down-open", headers=bearer(key))
    assert opened.status_code == 200 and opened.json() == {"identity": None}
    assert http.get("/plain").json() == {"ok": True}


def test_a_key_used_from_outside_its_ip_allowlist_is_403(
    http: httpx.Client, flavour: str, make_key: KeyMaker
) -> None:
    # The app passes the caller's address (here loopback) with every verification.
    here, _ = make_key(scopes=["orders:read"], ip_allowlist=["127.0.0.0/8", "::1"])
    elsewhere, _ = make_key(scopes=["orders:read"], ip_allowlist=["203.0.113.0/24"])
    for _ in range(2):  # the server's answer, then the cache's, keyed by address
        assert http.get(f"/{flavour}/orders", headers=bearer(here)).status_code == 200
        refused = http.get(f"/{flavour}/orders", headers=bearer(elsewhere))
        assert refused.status_code == 403
        assert problem_of(refused)["code"] == "forbidden_ip"
        assert "www-authenticate" not in refused.headers
