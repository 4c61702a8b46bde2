"""The cache's rules with time moved by hand (no server): what is cached, for how long,
what drops it, and when it may be served at all."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from typing import Any, Dict, List, Optional, Tuple

import pytest

from keyhaven import CacheOptions, VerifyResult, scopes_grant
from keyhaven._stream import SseParser, apply_event
from keyhaven.cache import VerifyCache, parse_rfc3339

T0 = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = T0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


def rfc3339(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def answer(**fields: Any) -> VerifyResult:
    data: Dict[str, Any] = {
        "valid": True, "code": "VALID", "key_id": "7Gx9QbWkP2mZ", "keyspace_id": "ks_1",
        "keyspace": "acme", "owner": {"id": "own_1", "external_id": "cust_42"},
        "scopes": ["orders:*", "profile"], "meta": {"plan": "pro"}, "ratelimits": [],
        "remaining": None,
    }
    data.update(fields)
    return VerifyResult.from_json(data)


def digest(key: str = "k") -> bytes:
    return hashlib.sha256(key.encode()).digest()


def cache_with(clock: Clock, **options: Any) -> VerifyCache:
    cache = VerifyCache(CacheOptions(**options), clock=lambda: clock.mono, wall=lambda: clock.wall)
    cache.heard()
    return cache


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.mark.parametrize(
    ("granted", "needed", "ok"),
    [
        (["orders:read"], "orders:read", True),
        (["orders:read"], "orders:write", False),
        (["*"], "anything", True),
        (["orders:*"], "orders:read", True),
        (["orders:*"], "orders:", False),
        (["orders:*"], "orders", False),
        (["orders:*"], "ordersx:read", False),
        (["orders:*"], "orders:*", True),
        (["orders:read"], "orders:*", False),
        (["a:b:*"], "a:b:c", True),
        (["orders*"], "orders:read", False),
        ([], "x", False),
    ],
)
def test_scope_rule(granted: List[str], needed: str, ok: bool) -> None:
    assert scopes_grant(granted, needed) is ok


def test_valid_unlimited_answer_is_cached_and_scopes_decided_locally(clock: Clock) -> None:
    cache = cache_with(clock)
    cache.store(digest(), answer(), cache.before_call())
    hit = cache.lookup(digest(), ())
    assert hit is not None and hit.valid and hit.cached and hit.key_id == "7Gx9QbWkP2mZ"
    assert hit.owner_external_id == "cust_42" and hit.meta == {"plan": "pro"}
    covered = cache.lookup(digest(), ("orders:read", "profile"))
    assert covered is not None and covered.code == "VALID"
    refused = cache.lookup(digest(), ("orders:read", "admin"))
    assert refused is not None and not refused.valid and refused.code == "INSUFFICIENT_SCOPES"
    assert cache.lookup(digest("other"), ()) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"valid": False, "code": "REVOKED"},
        {"valid": False, "code": "INSUFFICIENT_SCOPES"},
        {"remaining": 10},
        {"remaining": 0},
        {"ratelimits": [{"name": "requests", "scope": "key", "limit": 10, "duration_ms": 1000,
                         "remaining": 9, "reset_at": "2030-01-01T00:00:00Z", "exceeded": False}]},
    ],
)
def test_refusals_and_limited_keys_are_never_cached(clock: Clock, fields: Dict[str, Any]) -> None:
    cache = cache_with(clock)
    cache.store(digest(), answer(**fields), cache.before_call())
    assert cache.lookup(digest(), ()) is None
    assert len(cache) == 0


def test_an_answer_that_raced_with_an_event_is_not_cached(clock: Clock) -> None:
    cache = cache_with(clock)
    for event in (("key", '{"key_id": "someone_else"}'), ("all", "{}"), ("reset", "{}"), ("mystery", "")):
        before = cache.before_call()
        apply_event(cache, *event)
        cache.store(digest(), answer(), before)
        assert cache.lookup(digest(), ()) is None, event


def test_nothing_is_cached_while_the_stream_has_not_vouched(clock: Clock) -> None:
    cache = VerifyCache(CacheOptions(), clock=lambda: clock.mono, wall=lambda: clock.wall)
    cache.store(digest(), answer(), cache.before_call())
    assert cache.lookup(digest(), ()) is None
    cache.heard()
    clock.advance(0.6)  # silent for more than half of coherence_ms: not coherent
    cache.store(digest(), answer(), cache.before_call())
    assert len(cache) == 0


def test_served_only_within_half_the_coherence_bound(clock: Clock) -> None:
    cache = cache_with(clock, coherence_ms=1000)
    cache.store(digest(), answer(), cache.before_call())
    clock.advance(0.5)
    assert cache.lookup(digest(), ()) is not None
    clock.advance(0.01)
    assert cache.lookup(digest(), ()) is None  # silent stream: ask the server
    apply_event(cache, "heartbeat", "{}")
    assert cache.lookup(digest(), ()) is not None
    clock.advance(0.6)
    apply_event(cache, "key", '{"key_id": "unrelated"}')  # an event is not a heartbeat
    assert cache.lookup(digest(), ()) is None
    apply_event(cache, "reset", "{}")  # a reset vouches again, and drops everything
    assert cache.lookup(digest(), ()) is None


def test_never_past_ttl_expiry_or_grace(clock: Clock) -> None:
    cache = cache_with(clock, ttl_ms=10_000, coherence_ms=86_400_000)
    cases: List[Tuple[str, Dict[str, Any], float]] = [
        ("ttl", {}, 10.0),
        ("expiry", {"expires_at": rfc3339(T0 + 3)}, 3.0),
        ("grace", {"rotation": {"successor_key_id": "x" * 12, "grace_until": rfc3339(T0 + 2)}}, 2.0),
        ("both", {"expires_at": rfc3339(T0 + 5), "rotation": {"successor_key_id": "x" * 12, "grace_until": rfc3339(T0 + 4)}}, 4.0),
    ]
    for name, fields, lifetime in cases:
        clock.mono, clock.wall = 100.0, T0
        cache.invalidate_all()
        cache.heard()
        cache.store(digest(), answer(**fields), cache.before_call())
        clock.advance(lifetime - 0.01)
        assert cache.lookup(digest(), ()) is not None, name
        clock.advance(0.02)
        assert cache.lookup(digest(), ()) is None, name


def test_past_expiry_or_unreadable_times_are_not_cached(clock: Clock) -> None:
    cache = cache_with(clock)
    for fields in ({"expires_at": rfc3339(T0 - 1)}, {"expires_at": "tomorrow"}):
        cache.store(digest(), answer(**fields), cache.before_call())
        assert len(cache) == 0


def test_key_events_drop_that_key_and_all_reset_unknown_drop_everything(clock: Clock) -> None:
    cache = cache_with(clock)

    def fill() -> None:
        cache.store(digest("a"), answer(key_id="aaaaaaaaaaaa"), cache.before_call())
        cache.store(digest("a2"), answer(key_id="aaaaaaaaaaaa"), cache.before_call())
        cache.store(digest("b"), answer(key_id="bbbbbbbbbbbb"), cache.before_call())
        assert len(cache) == 3

    fill()
    apply_event(cache, "key", '{"key_id": "aaaaaaaaaaaa"}')
    assert cache.lookup(digest("a"), ()) is None and cache.lookup(digest("a2"), ()) is None
    assert cache.lookup(digest("b"), ()) is not None
    for event, data in (("all", "{}"), ("reset", "{}"), ("key", "not json"), ("key", "{}"), ("surprise", "{}"), ("message", "")):
        fill()
        apply_event(cache, event, data)
        assert len(cache) == 0, event


def test_capacity_evicts_the_oldest(clock: Clock) -> None:
    cache = cache_with(clock, capacity=2)
    for i in range(3):
        cache.store(digest(str(i)), answer(key_id=f"{i}" * 12), cache.before_call())
    assert len(cache) == 2
    assert cache.lookup(digest("0"), ()) is None
    assert cache.lookup(digest("2"), ()) is not None


def test_cached_answers_cannot_be_changed_through_their_fields(clock: Clock) -> None:
    cache = cache_with(clock)
    cache.store(digest(), answer(), cache.before_call())
    hit = cache.lookup(digest(), ())
    assert hit is not None and hit.meta is not None
    with pytest.raises(TypeError):
        hit.meta["plan"] = "free"  # type: ignore[index]
    assert isinstance(hit.scopes, tuple)


def test_sse_parser() -> None:
    parser = SseParser()
    lines = [
        ": a comment", "id: abc-1", "event: key", 'data: {"key_id":', 'data: "x"}', "",
        "", "event:heartbeat", "data:{}", "",
        "data: only data", "",
    ]
    events: List[Optional[Tuple[str, str, Optional[str]]]] = [parser.feed(line) for line in lines]
    got = [e for e in events if e is not None]
    assert got == [
        ("key", '{"key_id":\n"x"}', "abc-1"),
        ("heartbeat", "{}", None),
        ("message", "only data", None),
    ]


def test_rfc3339() -> None:
    assert parse_rfc3339("2030-01-01T00:00:00Z") == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()
    assert parse_rfc3339("2030-01-01T01:00:00.250+01:00") == datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp() + 0.25
    assert parse_rfc3339("2030-01-01T00:00:00.123456789Z") is not None
    assert parse_rfc3339("2030-01-01") is None
    assert parse_rfc3339("2030-13-01T00:00:00Z") is None
    assert parse_rfc3339((datetime(2030, 1, 1, tzinfo=timezone.utc) - timedelta(0)).isoformat()) is not None
