"""Typed shapes of Keyhaven's answers.

The verify answer is a frozen dataclass (:class:`VerifyResult`), since it is what an API
reads on every request; the admin API's resources are plain JSON dictionaries described
by ``TypedDict``\\ s (what the server sends, field for field, as ``docs/openapi.json``
documents it). Timestamps are RFC 3339 strings in UTC, as on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple, TypedDict

__all__ = [
    "CacheOptions",
    "CreatedKey",
    "Key",
    "Keyspace",
    "Owner",
    "Page",
    "Ratelimit",
    "RatelimitSpec",
    "Rotation",
    "VerifyOwner",
    "VerifyResult",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class VerifyOwner:
    """The key's owner: Keyhaven's id and your own ``external_id`` for the customer."""

    id: str
    external_id: Optional[str] = None


@dataclass(frozen=True)
class Rotation:
    """Set on a rotated key that still verifies during its grace period."""

    successor_key_id: str
    grace_until: str


@dataclass(frozen=True)
class Ratelimit:
    """One rate limit as applied to this call."""

    name: str
    scope: str
    limit: int
    duration_ms: int
    remaining: int
    reset_at: str
    exceeded: bool
    retry_after_ms: Optional[int] = None


@dataclass(frozen=True)
class VerifyResult:
    """The answer to ``POST /v1/keys/verify``.

    ``valid`` and ``code`` are always set (``VALID``, ``NOT_FOUND``, ``MALFORMED``,
    ``EXPIRED``, ``REVOKED``, ``DISABLED``, ``FORBIDDEN_IP``, ``INSUFFICIENT_SCOPES``,
    ``RATE_LIMITED``, ``USAGE_EXCEEDED``, ``FORBIDDEN``); the rest only once the secret matched.
    ``cached`` is true when the client answered from its local cache (see
    :class:`CacheOptions`), false when the server did.
    """

    valid: bool
    code: str
    key_id: Optional[str] = None
    keyspace_id: Optional[str] = None
    keyspace: Optional[str] = None
    owner: Optional[VerifyOwner] = None
    name: Optional[str] = None
    scopes: Optional[Tuple[str, ...]] = None
    meta: Optional[Mapping[str, Any]] = None
    expires_at: Optional[str] = None
    rotation: Optional[Rotation] = None
    ratelimits: Tuple[Ratelimit, ...] = ()
    remaining: Optional[int] = None
    #: For ``INSUFFICIENT_PERMISSIONS``: the query's permissions the key lacks.
    missing_permissions: Optional[Tuple[str, ...]] = None
    #: A signed token was verified rather than the key (``scopes`` and ``expires_at``
    #: are the token's).
    token: bool = False
    cached: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VerifyResult:
        """Reads the server's JSON answer (unknown fields are ignored)."""
        owner = data.get("owner")
        rotation = data.get("rotation")
        scopes = data.get("scopes")
        meta = data.get("meta")
        return cls(
            valid=bool(data.get("valid", False)),
            code=str(data.get("code", "")),
            key_id=data.get("key_id"),
            keyspace_id=data.get("keyspace_id"),
            keyspace=data.get("keyspace"),
            owner=VerifyOwner(id=owner["id"], external_id=owner.get("external_id"))
            if isinstance(owner, Mapping)
            else None,
            name=data.get("name"),
            scopes=tuple(scopes) if isinstance(scopes, list) else None,
            meta=MappingProxyType(dict(meta)) if isinstance(meta, Mapping) else None,
            expires_at=data.get("expires_at"),
            rotation=Rotation(
                successor_key_id=rotation["successor_key_id"],
                grace_until=rotation["grace_until"],
            )
            if isinstance(rotation, Mapping)
            else None,
            ratelimits=tuple(
                Ratelimit(
                    name=r["name"],
                    scope=r.get("scope", "key"),
                    limit=int(r["limit"]),
                    duration_ms=int(r["duration_ms"]),
                    remaining=int(r["remaining"]),
                    reset_at=r["reset_at"],
                    exceeded=bool(r["exceeded"]),
                    retry_after_ms=r.get("retry_after_ms"),
                )
                for r in data.get("ratelimits") or ()
            ),
            remaining=data.get("remaining"),
            missing_permissions=tuple(data["missing_permissions"])
            if isinstance(data.get("missing_permissions"), list)
            else None,
            token=bool(data.get("token", False)),
        )

    @property
    def owner_id(self) -> Optional[str]:
        return self.owner.id if self.owner else None

    @property
    def owner_external_id(self) -> Optional[str]:
        return self.owner.external_id if self.owner else None


@dataclass(frozen=True)
class CacheOptions:
    """The local verify cache, following the server's change stream (``/v1/changes``).

    - ``ttl_ms``: no cached answer is served longer than this (the server's
      ``cache_ttl_ms`` default, 60 s);
    - ``capacity``: at most this many cached keys (the oldest entry goes first);
    - ``coherence_ms``: keep equal to the server's ``cache_coherence_ms`` (default
      1000). Cached answers are served only while the stream has sent a heartbeat (or
      ``reset``) within half of it; otherwise every call goes to the server.
    """

    ttl_ms: int = 60_000
    capacity: int = 10_000
    coherence_ms: int = 1_000


class _RatelimitSpecRequired(TypedDict):
    name: str
    limit: int
    duration_ms: int


class RatelimitSpec(_RatelimitSpecRequired, total=False):
    """A named rate limit: ``limit`` calls per ``duration_ms``, at most ``burst`` at once."""

    burst: Optional[int]


class _KeyspaceRequired(TypedDict):
    id: str
    name: str
    prefix: str
    ratelimits: List[RatelimitSpec]
    created_at: str
    updated_at: str


class Keyspace(_KeyspaceRequired, total=False):
    max_key_age_seconds: Optional[int]
    default_grace_seconds: Optional[int]
    expiry_warning_seconds: Optional[int]
    leak_policy: str
    alerts: Dict[str, Any]
    branding: Dict[str, Any]
    ip_allowlist: List[str]
    #: New keys' secret strength: 22 bytes (30 characters) or 32 (44).
    secret_bytes: int


class _KeyRequired(TypedDict):
    key_id: str
    keyspace_id: str
    start: str
    scopes: List[str]
    meta: Dict[str, Any]
    enabled: bool
    recoverable: bool
    ratelimits: List[RatelimitSpec]
    created_at: str
    updated_at: str


class Key(_KeyRequired, total=False):
    """A key as the API shows it: never the secret."""

    owner_id: Optional[str]
    name: Optional[str]
    expires_at: Optional[str]
    grace_until: Optional[str]
    last_used_at: Optional[str]
    revoked_at: Optional[str]
    revoked_reason: Optional[str]
    rotated_from: Optional[str]
    rotated_to: Optional[str]
    quota: Optional[Dict[str, Any]]
    import_format: Optional[str]
    ip_allowlist: List[str]
    #: The plan the key is on (``/v1/plans``), if any.
    plan: Optional[str]


class CreatedKey(Key, total=False):
    """A new key's record and its plaintext ``key``, which the server shows this once
    (always present in the server's answer)."""

    key: str


class _OwnerRequired(TypedDict):
    id: str
    external_id: str
    meta: Dict[str, Any]
    ratelimits: List[RatelimitSpec]
    created_at: str
    updated_at: str


class Owner(_OwnerRequired, total=False):
    name: Optional[str]
    quota: Optional[Dict[str, Any]]
    ip_allowlist: List[str]


class _PageRequired(TypedDict):
    data: List[Dict[str, Any]]


class Page(_PageRequired, total=False):
    """One page of a list: pass ``next_cursor`` as ``cursor`` for the next."""

    next_cursor: Optional[str]
