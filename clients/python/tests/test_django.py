"""Django and Django REST Framework over a real socket (wsgiref, threaded): the
middleware (``request.keyhaven``, ``require_scopes``) and DRF's authentication class
with ``HasScopes``: 200 with the caller, 401, 403, 429 with Retry-After, 503."""

from __future__ import annotations

import socket
from typing import Iterator

import httpx
import pytest

import keyhaven
from conftest import KeyMaker
from helpers import Server, limit_one, problem_of, refused_within_a_second, unknown_key
from servers import WsgiServer

INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'


@pytest.fixture(scope="module")
def site_url(server: Server) -> Iterator[str]:
    import django_site

    django_site.configure(server.url, server.root_key)
    from django.core.wsgi import get_wsgi_application

    running = WsgiServer(get_wsgi_application())
    yield running.url
    running.close()
    from keyhaven.django import close_client

    close_client()


@pytest.fixture
def http(site_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=site_url, timeout=10) as client:
        yield client


#: The protected route of each integration, and the one needing only a valid key.
ROUTES = {
    "middleware": ("/mw/orders", "/mw/any"),
    "drf": ("/drf/orders", None),
    "drf-behind-middleware": ("/mw/drf-orders", None),
}


@pytest.fixture(params=sorted(ROUTES))
def route(request: pytest.FixtureRequest) -> str:
    return ROUTES[request.param][0]


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_valid_key_reaches_the_view_with_its_identity(
    http: httpx.Client, route: str, admin: keyhaven.Client, keyspace: keyhaven.Keyspace
) -> None:
    owner = admin.create_owner(f"dj_{keyspace['prefix']}")
    created = admin.create_key(keyspace["id"], owner_id=owner["id"], scopes=["orders:read", "x"])
    for _ in range(3):
        response = http.get(route, headers=bearer(created["key"]))
        assert response.status_code == 200, response.text
        assert response.json() == {
            "key_id": created["key_id"], "keyspace_id": keyspace["id"], "owner_id": owner["id"],
            "owner_external_id": owner["external_id"], "scopes": ["orders:read", "x"],
            "ratelimits": [], "remaining": None,
        }
    assert http.get(route, headers={"X-API-Key": created["key"]}).status_code == 200


def test_missing_unknown_and_revoked_keys_are_401(
    http: httpx.Client, route: str, admin: keyhaven.Client, keyspace: keyhaven.Keyspace, make_key: KeyMaker
) -> None:
    missing = http.get(route)
    assert missing.status_code == 401
    assert problem_of(missing)["code"] == "missing_key"
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'

    unknown = http.get(route, headers=bearer(unknown_key(keyspace["prefix"])))
    assert unknown.status_code == 401 and problem_of(unknown)["code"] == "not_found"
    assert unknown.headers["www-authenticate"] == INVALID_TOKEN

    key, key_id = make_key(scopes=["orders:read"])
    assert http.get(route, headers=bearer(key)).status_code == 200
    admin.revoke_key(key_id)
    # The site's client is cached: the revocation reaches it through the change stream,
    # within a second (usually a few milliseconds).
    revoked = refused_within_a_second(lambda: http.get(route, headers=bearer(key)))
    assert revoked.status_code == 401 and problem_of(revoked)["code"] == "revoked"
    assert revoked.headers["www-authenticate"] == INVALID_TOKEN


def test_missing_scope_is_403(http: httpx.Client, route: str, make_key: KeyMaker) -> None:
    key, _ = make_key(scopes=["orders:write"])
    for _ in range(2):
        response = http.get(route, headers=bearer(key))
        assert response.status_code == 403
        assert problem_of(response)["code"] == "insufficient_scopes"


def test_exhausted_limit_is_429_with_retry_after(http: httpx.Client, route: str, make_key: KeyMaker) -> None:
    key, _ = make_key(scopes=["orders:read"], ratelimits=limit_one())
    first = http.get(route, headers=bearer(key))
    assert first.status_code == 200 and first.json()["ratelimits"] == [0]
    limited = http.get(route, headers=bearer(key))
    assert limited.status_code == 429
    assert problem_of(limited)["code"] == "rate_limited"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert limited.headers["ratelimit-policy"] == '"requests";q=1;w=60'


def test_middleware_extras(http: httpx.Client, make_key: KeyMaker) -> None:
    key, key_id = make_key(ratelimits=[{"name": "requests", "limit": 10, "duration_ms": 60_000}])
    response = http.get("/mw/any", headers=bearer(key))
    assert response.status_code == 200 and response.json()["key_id"] == key_id
    assert response.headers["ratelimit"].startswith('"requests";r=9;t=')
    assert http.get("/mw/public").json() == {"identity": None}
    # /mw/publicity is not under the exempt /mw/public (whole segments only)
    assert http.get("/mw/publicity").status_code == 401


def test_drf_permission_class_with_its_own_scopes(http: httpx.Client, make_key: KeyMaker) -> None:
    reader, _ = make_key(scopes=["orders:read"])
    writer, _ = make_key(scopes=["orders:*"])
    refused = http.get("/drf/write", headers=bearer(reader))
    assert refused.status_code == 403 and problem_of(refused)["code"] == "insufficient_scopes"
    assert http.get("/drf/write", headers=bearer(writer)).status_code == 200


def test_unreachable_keyhaven_is_503(http: httpx.Client, make_key: KeyMaker) -> None:
    import keyhaven.django as kd

    key, _ = make_key(scopes=["orders:read"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    saved = kd._client
    kd._client = keyhaven.Client(dead, "kh_root_unused", retries=0)
    try:
        for route in ("/mw/orders", "/drf/orders"):
            down = http.get(route, headers=bearer(key))
            assert down.status_code == 503, route
            assert problem_of(down)["code"] == "unavailable"
    finally:
        kd._client.close()
        kd._client = saved


def test_a_key_used_from_outside_its_ip_allowlist_is_403(
    http: httpx.Client, route: str, make_key: KeyMaker
) -> None:
    here, _ = make_key(scopes=["orders:read"], ip_allowlist=["127.0.0.0/8", "::1"])
    elsewhere, _ = make_key(scopes=["orders:read"], ip_allowlist=["203.0.113.0/24"])
    for _ in range(2):
        assert http.get(route, headers=bearer(here)).status_code == 200
        refused = http.get(route, headers=bearer(elsewhere))
        assert refused.status_code == 403
        assert problem_of(refused)["code"] == "forbidden_ip"
