"""The client against a real server: verify answers, the admin calls, errors, and
retries (network errors only, never an answer)."""

from __future__ import annotations

from typing import Any, List

import httpx
import pytest

import keyhaven
from conftest import KeyMaker
from helpers import Server, limit_one, suffix, unknown_key, wait_until


def test_verify_answers_with_the_whole_shape(admin: keyhaven.Client, keyspace: keyhaven.Keyspace) -> None:
    owner = admin.create_owner(f"cust_{suffix()}", name="Customer")
    created = admin.create_key(
        keyspace["id"], owner_id=owner["id"], name="billing", scopes=["orders:read"],
        meta={"plan": "pro"}, expires_at="2099-01-01T00:00:00Z",
    )
    result = admin.verify(created["key"], scopes=["orders:read"])
    assert result.valid and result.code == "VALID" and not result.cached
    assert result.key_id == created["key_id"]
    assert result.keyspace_id == keyspace["id"] and result.keyspace == keyspace["name"]
    assert result.owner is not None and result.owner.id == owner["id"]
    assert result.owner_external_id == owner["external_id"]
    assert result.name == "billing" and result.scopes == ("orders:read",)
    assert result.meta == {"plan": "pro"}
    assert result.expires_at is not None and result.expires_at.startswith("2099-01-01")
    assert result.ratelimits == () and result.remaining is None and result.rotation is None

    refused = admin.verify(created["key"], scopes=["orders:write"])
    assert not refused.valid and refused.code == "INSUFFICIENT_SCOPES"


def test_verify_refusals(admin: keyhaven.Client, keyspace: keyhaven.Keyspace, make_key: KeyMaker) -> None:
    unknown = admin.verify(unknown_key(keyspace["prefix"]))
    assert (unknown.valid, unknown.code, unknown.key_id) == (False, "NOT_FOUND", None)
    assert admin.verify("garbage").code == "MALFORMED"

    key, key_id = make_key(ratelimits=limit_one())
    first = admin.verify(key, client_ip="127.0.0.1")
    assert first.valid and len(first.ratelimits) == 1 and first.ratelimits[0].remaining == 0
    second = admin.verify(key)
    assert second.code == "RATE_LIMITED" and second.ratelimits[0].exceeded
    assert second.ratelimits[0].retry_after_ms is not None and second.ratelimits[0].retry_after_ms > 0

    counted, _ = make_key(quota={"remaining": 1})
    assert admin.verify(counted).remaining == 0
    assert admin.verify(counted).code == "USAGE_EXCEEDED"

    admin.update_key(key_id, {"enabled": False})
    assert admin.verify(key).code == "DISABLED"


def test_admin_calls_round_trip(admin: keyhaven.Client) -> None:
    tag = suffix()
    ks = admin.create_keyspace(f"round trip {tag}", f"rt_{tag}")
    assert admin.get_keyspace(ks["id"])["prefix"] == f"rt_{tag}"
    listed = admin.list_keyspaces(limit=200)
    assert "data" in listed
    renamed = admin.update_keyspace(ks["id"], {"name": f"renamed {tag}"})
    assert renamed["name"] == f"renamed {tag}"

    owner = admin.create_owner(f"ext_{tag}", name="Ann", meta={"tier": 1})
    assert admin.get_owner(owner["id"])["external_id"] == f"ext_{tag}"
    assert [o["id"] for o in admin.list_owners(external_id=f"ext_{tag}")["data"]] == [owner["id"]]

    created = admin.create_key(ks["id"], owner_id=owner["id"], name="k1", scopes=["a"])
    assert created["key"].startswith(f"rt_{tag}_") and created["start"].endswith(created["key"][-4:])
    key_id = created["key_id"]
    got = admin.get_key(key_id)
    assert got["name"] == "k1" and "key" not in got
    updated = admin.update_key(key_id, {"name": None, "scopes": ["a", "b"]})
    assert updated.get("name") is None and updated["scopes"] == ["a", "b"]
    page = admin.list_keys(keyspace_id=ks["id"], limit=1)
    assert [k["key_id"] for k in page["data"]] == [key_id]
    second = admin.create_key(ks["id"])
    assert {k["key_id"] for k in admin.iter_keys(keyspace_id=ks["id"], limit=1)} == {key_id, second["key_id"]}

    rotated = admin.rotate_key(key_id, grace_period_seconds=60)
    assert rotated["key_id"] != key_id and rotated["key"]
    old = admin.verify(created["key"])
    assert old.valid and old.rotation is not None and old.rotation.successor_key_id == rotated["key_id"]

    revoked = admin.revoke_key(second["key_id"], reason="test")
    assert revoked.get("revoked_at") and revoked.get("revoked_reason") == "test"
    assert admin.verify(second["key"]).code == "REVOKED"

    usage = admin.key_usage(key_id, granularity="minute")
    # Usage is flushed in batches: the shape, not yet the count.
    assert usage["granularity"] == "minute" and isinstance(usage["total"], int) and usage["data"]
    audit = admin.list_audit_events(target_id=key_id)
    assert audit["data"], "creating, updating and rotating a key are audited"

    admin.delete_key(second["key_id"])
    with pytest.raises(keyhaven.KeyhavenError) as gone:
        admin.get_key(second["key_id"])
    assert gone.value.status == 404 and gone.value.code == "not_found"

    assert admin.request("GET", f"/v1/keys/{key_id}")["key_id"] == key_id
    assert admin.request("get", "/v1/keys", params={"keyspace_id": ks["id"], "limit": 5})["data"]


def test_errors_carry_status_and_problem_code(admin: keyhaven.Client, server: Server) -> None:
    with pytest.raises(keyhaven.KeyhavenError) as bad:
        admin.create_keyspace("bad", "Not A Prefix")
    assert bad.value.status == 400 and bad.value.code and bad.value.problem.get("code") == bad.value.code
    assert "POST /v1/keyspaces: 400" in str(bad.value)
    with keyhaven.Client(server.url, "kh_root_not_a_key") as wrong:
        with pytest.raises(keyhaven.KeyhavenError) as unauthorized:
            wrong.verify("x")
    assert unauthorized.value.status == 401 and not unauthorized.value.unavailable


def _counting(handler: Any) -> Any:
    calls: List[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        result: httpx.Response = handler(request)
        return result

    return httpx.MockTransport(transport), calls


def test_network_errors_are_retried_with_the_same_idempotency_key() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    transport, calls = _counting(refuse)
    client = keyhaven.Client("http://127.0.0.1:9", "kh_root_secret", retries=2, transport=transport)
    with pytest.raises(keyhaven.KeyhavenError) as failed:
        client.create_keyspace("x", "x")
    assert failed.value.status is None and failed.value.code == "unavailable" and failed.value.unavailable
    assert "3 attempt" in str(failed.value)
    assert len(calls) == 3
    assert len({c.headers["idempotency-key"] for c in calls}) == 1
    with pytest.raises(keyhaven.KeyhavenError):
        client.verify("x")
    assert "idempotency-key" not in calls[-1].headers

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    transport, calls = _counting(slow)
    client = keyhaven.Client("http://127.0.0.1:9", "kh_root_secret", retries=0, transport=transport)
    with pytest.raises(keyhaven.KeyhavenError) as timed_out:
        client.get_key("abc")
    assert timed_out.value.code == "timeout" and len(calls) == 1


def test_a_post_the_server_would_apply_twice_is_not_sent_again_after_a_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    transport, calls = _counting(slow)
    client = keyhaven.Client("http://127.0.0.1:9", "kh_root_secret", retries=3, transport=transport)
    with pytest.raises(keyhaven.KeyhavenError):
        client.request("POST", "/v1/root-keys", json={"scopes": ["keys:read"]})
    assert len(calls) == 1, "a second root key could be made unseen"
    with pytest.raises(keyhaven.KeyhavenError):
        client.create_keyspace("x", "x")
    assert len(calls) == 1 + 4, "a deduplicated create is sent again"
    with pytest.raises(keyhaven.KeyhavenError):
        client.get_key("abc")
    assert len(calls) == 5 + 4, "a read is sent again"


def test_an_answer_is_never_retried() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"type": "urn:keyhaven:problem:unavailable", "title": "Service Unavailable",
                                         "status": 503, "code": "unavailable", "detail": "busy"})

    transport, calls = _counting(fail)
    client = keyhaven.Client("http://127.0.0.1:9", "kh_root_secret", retries=5, transport=transport)
    with pytest.raises(keyhaven.KeyhavenError) as failed:
        client.verify("some_key")
    assert failed.value.status == 503 and failed.value.unavailable and len(calls) == 1


def test_unreachable_server_fails_after_bounded_attempts() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with keyhaven.Client(f"http://127.0.0.1:{port}", "kh_root_secret", retries=1, timeout=1) as client:
        with pytest.raises(keyhaven.KeyhavenError) as failed:
            client.verify("acme_live_key")
    assert failed.value.status is None and "2 attempt" in str(failed.value)


async def test_async_client_round_trip(server: Server, keyspace: keyhaven.Keyspace) -> None:
    async with keyhaven.AsyncClient(server.url, server.root_key) as client:
        created = await client.create_key(keyspace["id"], scopes=["x:*"])
        result = await client.verify(created["key"], scopes="x:y")
        assert result.valid and result.key_id == created["key_id"]
        assert (await client.get_key(created["key_id"]))["scopes"] == ["x:*"]
        assert (await client.get_keyspace(keyspace["id"]))["id"] == keyspace["id"]
        keys = [k async for k in client.iter_keys(keyspace_id=keyspace["id"])]
        assert [k["key_id"] for k in keys] == [created["key_id"]]
        await client.revoke_key(created["key_id"])
        assert (await client.verify(created["key"])).code == "REVOKED"
        with pytest.raises(keyhaven.KeyhavenError) as missing:
            await client.get_owner("own_doesnotexist")
        assert missing.value.status == 404


def test_a_permission_query_goes_to_the_server_and_names_what_is_missing(
    server: Server, admin: keyhaven.Client, make_key: KeyMaker
) -> None:
    key, key_id = make_key()
    admin.update_key(key_id, {"permissions": ["docs.read"]})
    with keyhaven.Client(server.url, server.root_key, cache=True) as cached:
        # Cached as a plain VALID key...
        wait_until(lambda: cached.verify(key).cached, 2.0, "a cached answer")
        for _ in range(2):  # never from the cache
            refused = cached.verify(key, permissions="docs.read AND docs.write")
            assert refused.code == "INSUFFICIENT_PERMISSIONS"
            assert refused.missing_permissions == ("docs.write",)
            assert not refused.cached
        held = cached.verify(key, permissions="docs.read")
        assert held.code == "VALID" and held.missing_permissions is None
        with pytest.raises(keyhaven.KeyhavenError):
            cached.verify(key, permissions="docs.read AND")
