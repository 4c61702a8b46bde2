"""The cached client against a real server: what is served from the cache, what never
is, how fast a revocation reaches it (100 trials), and failing closed when the change
stream goes silent."""

from __future__ import annotations

import asyncio
import time
from typing import Iterator, List

import pytest

import keyhaven
from conftest import KeyMaker
from fake_stream import FakeStream
from helpers import Server, limit_one, percentiles, wait_until


@pytest.fixture
def cached(server: Server) -> Iterator[keyhaven.Client]:
    client = keyhaven.Client(server.url, server.root_key, cache=True)
    yield client
    client.close()


def verify_until_cached(client: keyhaven.Client, key: str, timeout: float = 5.0) -> keyhaven.VerifyResult:
    deadline = time.monotonic() + timeout
    while True:
        result = client.verify(key)
        assert result.valid, result.code
        if result.cached:
            return result
        assert time.monotonic() < deadline, "the answer was never cached"
        time.sleep(0.002)


def test_valid_unlimited_keys_are_served_from_the_cache(cached: keyhaven.Client, make_key: KeyMaker) -> None:
    key, key_id = make_key(scopes=["orders:*", "profile"])
    first = verify_until_cached(cached, key)
    assert first.key_id == key_id and first.scopes == ("orders:*", "profile")
    assert cached.verify(key).cached
    # Other scopes are decided locally with the server's rule.
    read = cached.verify(key, scopes=["orders:read", "profile"])
    assert read.cached and read.valid
    admin_scope = cached.verify(key, scopes=["admin"])
    assert admin_scope.cached and admin_scope.code == "INSUFFICIENT_SCOPES" and not admin_scope.valid
    assert cached.cache is not None and len(cached.cache) >= 1


def test_limited_keys_always_go_to_the_server(cached: keyhaven.Client, make_key: KeyMaker) -> None:
    limited, _ = make_key(ratelimits=[{"name": "requests", "limit": 100, "duration_ms": 60_000}])
    with_quota, _ = make_key(quota={"remaining": 100})
    verify_until_cached(cached, make_key()[0])  # the stream is vouching by now
    left = [cached.verify(limited) for _ in range(5)]
    assert [r.cached for r in left] == [False] * 5
    assert [r.ratelimits[0].remaining for r in left] == [99, 98, 97, 96, 95]
    used = [cached.verify(with_quota) for _ in range(5)]
    assert [r.cached for r in used] == [False] * 5
    assert [r.remaining for r in used] == [99, 98, 97, 96, 95]


def test_an_answer_narrowed_to_named_limits_fills_no_cache(cached: keyhaven.Client, make_key: KeyMaker) -> None:
    key, _ = make_key(ratelimits=limit_one())
    verify_until_cached(cached, make_key()[0])
    narrowed = cached.verify(key, ratelimits=["search"])  # the key's own limit is not named
    assert narrowed.valid and narrowed.ratelimits == ()
    # Not cached: the next call is counted against the key's limit by the server.
    counted = cached.verify(key)
    assert not counted.cached and [r.name for r in counted.ratelimits] == ["requests"]
    assert cached.verify(key).code == "RATE_LIMITED"


def test_a_change_to_the_key_drops_its_cached_answer(cached: keyhaven.Client, admin: keyhaven.Client, make_key: KeyMaker) -> None:
    key, key_id = make_key(scopes=["a"])
    verify_until_cached(cached, key)
    admin.update_key(key_id, {"scopes": ["b"]})
    wait_until(lambda: cached.verify(key).scopes == ("b",), 1.0, "the new scopes")
    rotated = admin.rotate_key(key_id, grace_period_seconds=3600)
    wait_until(lambda: cached.verify(key).rotation is not None, 1.0, "the rotation")
    assert cached.verify(key).rotation.successor_key_id == rotated["key_id"]  # type: ignore[union-attr]


def test_revocation_reaches_the_cached_client_within_a_second(
    cached: keyhaven.Client, admin: keyhaven.Client, keyspace: keyhaven.Keyspace, capsys: pytest.CaptureFixture[str]
) -> None:
    delays: List[float] = []
    for _ in range(100):
        created = admin.create_key(keyspace["id"])
        key = created["key"]
        verify_until_cached(cached, key)
        started = time.perf_counter()
        admin.revoke_key(created["key_id"])
        while True:
            result = cached.verify(key)
            elapsed = time.perf_counter() - started
            if not result.valid:
                break
            assert elapsed < 5, "still valid 5 s after its revocation"
            time.sleep(0.0002)
        assert result.code == "REVOKED" and not result.cached
        delays.append(elapsed)
    p = percentiles(delays)
    with capsys.disabled():
        print(
            f"\n[sync cached client] revocation refused after: p50 {p['p50'] * 1000:.1f} ms, "
            f"p99 {p['p99'] * 1000:.1f} ms, max {p['max'] * 1000:.1f} ms (100 trials)"
        )
    assert p["max"] < 1.0


async def test_revocation_reaches_the_async_cached_client(
    server: Server, keyspace: keyhaven.Keyspace, capsys: pytest.CaptureFixture[str]
) -> None:
    delays: List[float] = []
    async with keyhaven.AsyncClient(server.url, server.root_key) as admin, keyhaven.AsyncClient(
        server.url, server.root_key, cache=True
    ) as cached:
        for _ in range(100):
            created = await admin.create_key(keyspace["id"])
            key = created["key"]
            deadline = time.monotonic() + 5
            while not (await cached.verify(key)).cached:
                assert time.monotonic() < deadline, "the answer was never cached"
                await asyncio.sleep(0.002)
            started = time.perf_counter()
            await admin.revoke_key(created["key_id"])
            while (result := await cached.verify(key)).valid:
                assert time.perf_counter() - started < 5
                await asyncio.sleep(0.0002)
            delays.append(time.perf_counter() - started)
            assert result.code == "REVOKED"
    p = percentiles(delays)
    with capsys.disabled():
        print(
            f"\n[async cached client] revocation refused after: p50 {p['p50'] * 1000:.1f} ms, "
            f"p99 {p['p99'] * 1000:.1f} ms, max {p['max'] * 1000:.1f} ms (100 trials)"
        )
    assert p["max"] < 1.0


@pytest.fixture
def fake(server: Server) -> Iterator[FakeStream]:
    stream = FakeStream(server.url)
    yield stream
    stream.close()


def test_a_silent_stream_sends_every_call_to_the_server(
    fake: FakeStream, server: Server, admin: keyhaven.Client, make_key: KeyMaker
) -> None:
    options = keyhaven.CacheOptions(coherence_ms=400)
    with keyhaven.Client(fake.url, server.root_key, cache=options) as client:
        key, key_id = make_key()
        verify_until_cached(client, key)
        fake.mode = "silent"
        # The fake stream never tells the client about this revocation.
        admin.revoke_key(key_id)
        time.sleep(0.25)  # past half of coherence_ms without a heartbeat
        after = client.verify(key)
        assert not after.cached and after.code == "REVOKED"
        other, _ = make_key()
        assert [client.verify(other).cached for _ in range(3)] == [False] * 3
        # Silent for twice coherence_ms: the client drops the connection and reconnects.
        wait_until(lambda: fake.connections >= 2, 3.0, "a reconnection")
        fake.mode = "beat"
        verify_until_cached(client, other)


def test_reconnects_resume_from_the_last_event_id(fake: FakeStream, server: Server, make_key: KeyMaker) -> None:
    fake.mode = "close"
    with keyhaven.Client(fake.url, server.root_key, cache=True) as client:
        client.verify(make_key()[0])  # starts the follower
        wait_until(lambda: fake.connections >= 2, 3.0, "a reconnection")
        fake.mode = "beat"
    assert fake.last_event_ids[0] is None
    assert fake.last_event_ids[1] == "fake-close-7"
