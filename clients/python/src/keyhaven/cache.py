"""The local verify cache, kept coherent by the server's change stream.

The same rules as the Rust proxy node (``crates/server/src/gateway/remote.rs``):

- Only a VALID answer with no rate limit applied and no quota (``ratelimits`` empty,
  ``remaining`` null) is cached: every call of a limited key goes to the server, which
  counts it. (The client also never fills the cache from a call that named
  ``ratelimits``: such an answer lists only the named limits, so an empty list there
  does not show that the key has none.)
- Entries are keyed by the SHA-256 of the presented key and the client address (a key
  with an IP allowlist is valid from some addresses only); the key itself is never kept.
  An entry holds the answer (identity and the key's scopes), so a later call asking
  other scopes is decided here with the server's scope rule (:func:`scopes_grant`):
  covered, the cached VALID answer; not covered, INSUFFICIENT_SCOPES.
- No entry outlives the key's ``expires_at`` or ``rotation.grace_until``, nor the TTL.
- The stream's ``key`` event drops that key's entries; ``all``, ``reset`` and any event
  this client does not know drop every entry. Each drop bumps an epoch: an answer is
  stored only if the epoch is unchanged since before the call went out, so an answer
  fetched while a revocation arrived is never cached.
- Entries are served only while the stream has sent a ``heartbeat`` or ``reset`` within
  half of ``coherence_ms``; a silent stream means every call goes to the server.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from datetime import datetime, timezone
from typing import Callable, Dict, Iterable, Optional, Set, Tuple

from .models import CacheOptions, VerifyResult

__all__ = ["VerifyCache", "scopes_grant", "scopes_cover"]


def scopes_grant(granted: Iterable[str], needed: str) -> bool:
    """Whether ``granted`` covers ``needed``: equal, ``*``, or ``family:*`` covering a
    longer ``family:…``. Wildcards count only in what is granted, never in what is
    asked for (asking for ``keys:*`` needs ``keys:*`` or ``*`` granted)."""
    for g in granted:
        if g == needed or g == "*":
            return True
        if g.endswith(":*"):
            family = g[:-1]
            if needed.startswith(family) and len(needed) > len(family):
                return True
    return False


def scopes_cover(granted: Iterable[str], needed: Iterable[str]) -> bool:
    """Whether every scope in ``needed`` is covered by ``granted``."""
    granted = tuple(granted)
    return all(scopes_grant(granted, s) for s in needed)


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def parse_rfc3339(text: str) -> Optional[float]:
    """Seconds since the epoch of an RFC 3339 time, or ``None`` if unreadable."""
    m = _RFC3339.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    fraction = float("0." + m.group(7)) if m.group(7) else 0.0
    try:
        at = datetime(year, month, day, hour, minute, min(second, 59), tzinfo=timezone.utc)
    except ValueError:
        return None
    offset = 0
    if m.group(9):
        offset = (int(m.group(10)) * 60 + int(m.group(11))) * 60
        if m.group(9) == "-":
            offset = -offset
    return at.timestamp() + fraction - offset


@dataclasses.dataclass(frozen=True)
class _Entry:
    result: VerifyResult
    refused: VerifyResult
    granted: Tuple[str, ...]
    until: float


class VerifyCache:
    """Cached VALID answers by the SHA-256 of the key (thread-safe).

    ``clock`` (monotonic seconds) and ``wall`` (seconds since the epoch) are parameters
    so tests can move time by hand.
    """

    def __init__(
        self,
        options: CacheOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._entries: Dict[bytes, _Entry] = {}
        self._by_key_id: Dict[str, Set[bytes]] = {}
        # Keys whose signed tokens are answered offline: the server's VALID answer to
        # one of their tokens, until an event names the key.
        self._vouched: Dict[Tuple[str, str], Tuple[VerifyResult, float]] = {}
        self._epoch = 0
        self._heard: Optional[float] = None
        self._bound = options.coherence_ms / 2000.0
        self._ttl = options.ttl_ms / 1000.0

    # -- the stream's side ------------------------------------------------------------

    def heard(self) -> None:
        """The stream vouched for everything so far (a heartbeat or a reset)."""
        self._heard = self._clock()

    def coherent(self) -> bool:
        """Whether cached answers may be served now."""
        heard = self._heard
        return heard is not None and self._clock() - heard <= self._bound

    def invalidate_key(self, key_id: str) -> None:
        with self._lock:
            self._epoch += 1
            for vouched in [v for v in self._vouched if v[0] == key_id]:
                del self._vouched[vouched]
            for digest in self._by_key_id.pop(key_id, ()):
                self._entries.pop(digest, None)

    def invalidate_all(self) -> None:
        with self._lock:
            self._epoch += 1
            self._entries.clear()
            self._by_key_id.clear()
            self._vouched.clear()

    # -- the caller's side ------------------------------------------------------------

    def lookup(self, digest: bytes, scopes: Tuple[str, ...]) -> Optional[VerifyResult]:
        """The cached answer for ``digest`` under ``scopes``, or ``None`` (ask the
        server). Lock-free: a dict read is atomic."""
        entry = self._entries.get(digest)
        if entry is None:
            return None
        now = self._clock()
        heard = self._heard
        if heard is None or now - heard > self._bound or now >= entry.until:
            return None
        if scopes:
            granted = entry.granted
            for needed in scopes:
                if not scopes_grant(granted, needed):
                    return entry.refused
        return entry.result

    def before_call(self) -> Tuple[int, bool]:
        """What :meth:`store` needs to know about the moment before the call."""
        return self._epoch, self.coherent()

    def store(self, digest: bytes, result: VerifyResult, before: Tuple[int, bool]) -> None:
        """Caches ``result`` if it may be cached and nothing changed since ``before``."""
        epoch, coherent = before
        if not (
            coherent
            and result.valid
            and result.code == "VALID"
            and not result.ratelimits
            and result.remaining is None
            and result.key_id is not None
        ):
            return
        now, wall = self._clock(), self._wall()
        lifetime = self._ttl
        for at in (result.expires_at, result.rotation.grace_until if result.rotation else None):
            if at is None:
                continue
            ends = parse_rfc3339(at)
            if ends is None:
                return  # unreadable: never serve past a time we cannot read
            lifetime = min(lifetime, ends - wall)
        if lifetime <= 0:
            return
        cached = dataclasses.replace(result, cached=True)
        entry = _Entry(
            result=cached,
            refused=dataclasses.replace(cached, valid=False, code="INSUFFICIENT_SCOPES"),
            granted=result.scopes or (),
            until=now + lifetime,
        )
        key_id = result.key_id
        with self._lock:
            if self._epoch != epoch:
                return
            if digest not in self._entries and len(self._entries) >= self.options.capacity:
                self._evict_oldest()
            self._entries[digest] = entry
            self._by_key_id.setdefault(key_id, set()).add(digest)

    def vouched(self, key_id: str, client_ip: Optional[str] = None) -> Optional[VerifyResult]:
        """The server's answer to a token of ``key_id`` from ``client_ip`` (a key with an
        IP allowlist is valid from some addresses only), while the stream vouches and no
        event named the key since."""
        if not self.coherent():
            return None
        found = self._vouched.get((key_id, client_ip or ""))
        if found is None or self._clock() >= found[1]:
            return None
        return found[0]

    def vouch(self, result: VerifyResult, client_ip: Optional[str], before: Tuple[int, bool]) -> None:
        """Keeps the server's answer to a token of an unlimited key (the rule of
        :meth:`store`), so its other tokens are answered offline."""
        epoch, coherent = before
        if not (
            coherent
            and result.token
            and result.valid
            and result.code == "VALID"
            and not result.ratelimits
            and result.remaining is None
            and result.key_id is not None
        ):
            return
        with self._lock:
            if self._epoch != epoch:
                return
            entry = (result.key_id, client_ip or "")
            if entry not in self._vouched and len(self._vouched) >= self.options.capacity:
                del self._vouched[next(iter(self._vouched))]
            self._vouched[entry] = (result, self._clock() + self._ttl)

    def _evict_oldest(self) -> None:
        # Dicts keep insertion order: the first entry is the oldest.
        digest, entry = next(iter(self._entries.items()))
        del self._entries[digest]
        same = self._by_key_id.get(entry.result.key_id or "")
        if same is not None:
            same.discard(digest)
            if not same:
                del self._by_key_id[entry.result.key_id or ""]

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"VerifyCache(entries={len(self._entries)}, coherent={self.coherent()})"
