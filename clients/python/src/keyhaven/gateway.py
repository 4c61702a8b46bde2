"""What the framework integrations share: where the key is read from, the caller's
:class:`Identity`, and the :class:`Refusal` answered like Keyhaven's gateway
(``docs/gateway.md``, "Refusals"):

======  ===========================================  =============================================
status  ``code``                                     headers
======  ===========================================  =============================================
401     ``missing_key``                              ``WWW-Authenticate: Bearer realm="api"``
401     ``not_found``, ``malformed``, ``revoked``,   ``WWW-Authenticate: Bearer realm="api",
        ``expired``, ``disabled``                    error="invalid_token"``
403     ``insufficient_scopes``
429     ``rate_limited``                             ``Retry-After``, ``RateLimit``, ``RateLimit-Policy``
429     ``usage_exceeded``                           ``RateLimit``, ``RateLimit-Policy`` with limits
503     ``unavailable``                              Keyhaven could not be asked (fail closed)
======  ===========================================  =============================================

Every refusal is ``application/problem+json``: ``{type, title, status, code, detail}``.
"""

from __future__ import annotations

import ipaddress
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from .cache import parse_rfc3339, scopes_cover
from .models import Ratelimit, VerifyResult

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "Identity",
    "Refusal",
    "client_address",
    "decide",
    "insufficient_scopes",
    "is_exempt",
    "missing_key",
    "presented_key",
    "ratelimit_headers",
    "refusal",
    "unavailable",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
_CHALLENGE = 'Bearer realm="api"'
_INVALID_TOKEN = 'Bearer realm="api", error="invalid_token"'

_TITLES = {
    "NOT_FOUND": "The API key is not valid",
    "MALFORMED": "The API key is not valid",
    "EXPIRED": "The API key has expired",
    "REVOKED": "The API key has been revoked",
    "DISABLED": "The API key is disabled",
    "INSUFFICIENT_SCOPES": "The API key lacks a required scope",
    "FORBIDDEN_IP": "The API key may not be used from this address",
    "INSUFFICIENT_PERMISSIONS": "The API key lacks a required permission",
    "RATE_LIMITED": "Too many requests",
    "USAGE_EXCEEDED": "The API key's usage quota is exhausted",
}


@dataclass(frozen=True)
class Identity:
    """The caller, once its key verified: what the integrations attach to a request
    (``request.keyhaven`` in Django, ``request.auth`` in DRF, the dependency's value in
    FastAPI). ``ratelimits`` and ``remaining`` are the limits and quota left after this
    request (empty and ``None`` for an unlimited key)."""

    key_id: str
    keyspace_id: str
    owner_id: Optional[str]
    owner_external_id: Optional[str]
    scopes: Tuple[str, ...]
    name: Optional[str] = None
    meta: Optional[Mapping[str, Any]] = None
    ratelimits: Tuple[Ratelimit, ...] = ()
    remaining: Optional[int] = None
    expires_at: Optional[str] = None
    result: Optional[VerifyResult] = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, result: VerifyResult) -> Identity:
        return cls(
            key_id=result.key_id or "",
            keyspace_id=result.keyspace_id or "",
            owner_id=result.owner_id,
            owner_external_id=result.owner_external_id,
            scopes=result.scopes or (),
            name=result.name,
            meta=result.meta,
            ratelimits=result.ratelimits,
            remaining=result.remaining,
            expires_at=result.expires_at,
            result=result,
        )

    def has_scopes(self, *needed: str) -> bool:
        """Whether the key's scopes cover every one of ``needed`` (Keyhaven's rule:
        equal, ``*``, or ``family:*``)."""
        return scopes_cover(self.scopes, needed)


@dataclass(frozen=True)
class Refusal:
    """A refused request: status, problem body and headers."""

    status: int
    code: str
    title: str
    detail: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def problem(self) -> Dict[str, Any]:
        return {
            "type": f"urn:keyhaven:problem:{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }

    def body(self) -> bytes:
        return json.dumps(self.problem()).encode("utf-8")


def missing_key(key_header: Optional[str] = None) -> Refusal:
    where = f"{key_header}, " if key_header else ""
    return Refusal(
        401,
        "missing_key",
        "An API key is required",
        f"Send the API key in {where}the Authorization header (Bearer) or X-API-Key.",
        {"WWW-Authenticate": _CHALLENGE},
    )


def insufficient_scopes() -> Refusal:
    return Refusal(403, "insufficient_scopes", _TITLES["INSUFFICIENT_SCOPES"],
                   "The key was refused: INSUFFICIENT_SCOPES.")


def unavailable() -> Refusal:
    return Refusal(503, "unavailable", "Service Unavailable", "The key service cannot be reached.")


def refusal(result: VerifyResult, now: Optional[float] = None) -> Refusal:
    """The refusal for a verify answer that is not VALID."""
    code = result.code
    headers: Dict[str, str] = {}
    if code in ("INSUFFICIENT_SCOPES", "FORBIDDEN_IP", "INSUFFICIENT_PERMISSIONS"):
        status = 403
    elif code in ("RATE_LIMITED", "USAGE_EXCEEDED"):
        status = 429
    else:
        status = 401
        headers["WWW-Authenticate"] = _INVALID_TOKEN
    waits = [r.retry_after_ms for r in result.ratelimits if r.exceeded and r.retry_after_ms is not None]
    if waits:
        headers["Retry-After"] = str(max(1, math.ceil(max(waits) / 1000)))
    headers.update(ratelimit_headers(result.ratelimits, now))
    return Refusal(
        status,
        code.lower() or "not_found",
        _TITLES.get(code, "The API key was refused"),
        f"The key was refused: {code}.",
        headers,
    )


def decide(result: VerifyResult) -> Union[Identity, Refusal]:
    """The caller's :class:`Identity` for a VALID answer, else the :class:`Refusal`."""
    if result.valid and result.code == "VALID" and result.key_id is not None:
        return Identity.of(result)
    return refusal(result)


def ratelimit_headers(limits: Sequence[Ratelimit], now: Optional[float] = None) -> Dict[str, str]:
    """``RateLimit-Policy`` (every limit: ``"name";q=<limit>;w=<window s>``) and
    ``RateLimit`` (the one closest to exhaustion: ``"name";r=<remaining>;t=<s to reset>``),
    as the gateway sends them; empty without limits."""
    if not limits:
        return {}
    tightest = min(limits, key=lambda r: (not r.exceeded, r.remaining * 1000 // max(r.limit, 1)))
    policy = ", ".join(
        f'"{_sf(r.name)}";q={r.limit};w={max(1, math.ceil(r.duration_ms / 1000))}' for r in limits
    )
    now = time.time() if now is None else now
    reset_at = parse_rfc3339(tightest.reset_at)
    reset_s = max(0, math.ceil(reset_at - now)) if reset_at is not None else 0
    current = f'"{_sf(tightest.name)}";r={tightest.remaining};t={reset_s}'
    return {"RateLimit-Policy": policy, "RateLimit": current}


def _sf(name: str) -> str:
    out = []
    for ch in name:
        if " " <= ch <= "~":
            out.append("\\" + ch if ch in '"\\' else ch)
    return "".join(out)


def _bearer(value: str) -> Optional[str]:
    scheme, sep, token = value.partition(" ")
    if not sep or scheme.lower() != "bearer":
        return None
    token = token.strip()
    return token or None


def presented_key(
    header: Callable[[str], Optional[str]], key_header: Optional[str] = None
) -> Optional[str]:
    """The key a request presents: the configured ``key_header`` first, then
    ``Authorization: Bearer``, then ``X-API-Key``; never the query string. ``header``
    looks a header up by (case-insensitive) name."""
    if key_header:
        value = header(key_header)
        if value is not None:
            value = value.strip()
            return value or None
    auth = header("authorization")
    if auth is not None:
        token = _bearer(auth)
        if token is not None:
            return token
    value = header("x-api-key")
    if value is not None:
        value = value.strip()
        return value or None
    return None


def client_address(
    socket_ip: Optional[str], forwarded_for: Optional[str], trusted_proxy_hops: int = 0
) -> Optional[str]:
    """The client's address: the socket's, or with ``trusted_proxy_hops`` proxies in
    front the ``X-Forwarded-For`` entry that many from the right (entries further left
    were written by the client and are never believed). ``None`` when unreadable; behind
    proxies never the socket's address, which is a proxy's (an IP allowlist admitting the
    proxy would otherwise admit every client behind it)."""
    if trusted_proxy_hops > 0:
        hops = (forwarded_for or "").split(",")
        if len(hops) >= trusted_proxy_hops:
            return _ip(hops[-trusted_proxy_hops].strip())
        return None
    return _ip(socket_ip)


def _ip(text: Optional[str]) -> Optional[str]:
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def is_exempt(path: str, prefixes: Iterable[str]) -> bool:
    """Whether ``path`` is under one of ``prefixes``, whole segments only (``/health``
    covers ``/health`` and ``/health/live``, never ``/healthz``)."""
    for prefix in prefixes:
        p = prefix.rstrip("/")
        if p == "" or path == p or path.startswith(p + "/"):
            return True
    return False

