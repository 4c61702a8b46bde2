"""The clients: :class:`Client` (blocking, thread-safe) and :class:`AsyncClient`
(asyncio). Both verify keys (optionally through the local cache) and call the admin API.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Dict,
    Iterable,
    Iterator,
    Mapping,
    Optional,
    Sequence,
    Tuple,
    Type,
    Union,
    cast,
)

import httpx

from . import _calls as c
from ._http import (
    RETRYABLE,
    Secret,
    SecretBody,
    answer_error,
    backoff,
    decode,
    idempotency_key,
    may_resend,
    network_error,
)
from ._stream import TaskFollower, ThreadFollower
from ._version import __version__
from .cache import VerifyCache
from .errors import KeyhavenError
from .tokens import TokenKeys, looks_like_token, offline_available, rfc3339
from .models import CacheOptions, CreatedKey, Key, Keyspace, Owner, Page, RatelimitSpec, VerifyResult

__all__ = ["AsyncClient", "Client"]

Scopes = Union[str, Iterable[str], None]
_USER_AGENT = f"keyhaven-python/{__version__}"


class _Base:
    """Configuration and the cache, shared by both clients."""

    def __init__(
        self,
        base_url: str,
        root_key: str,
        timeout: float,
        retries: int,
        cache: Union[bool, CacheOptions],
    ) -> None:
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ValueError("base_url must be an http:// or https:// URL")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.base_url = base_url.rstrip("/")
        self._root_key = Secret(root_key)
        self._auth = Secret(f"Bearer {root_key}")
        self.timeout = timeout
        self.retries = retries
        options = CacheOptions() if cache is True else cache if cache else None
        self._cache: Optional[VerifyCache] = VerifyCache(options) if options else None
        self._tokens: Optional[TokenKeys] = TokenKeys() if offline_available() else None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def cache(self) -> Optional[VerifyCache]:
        """The local verify cache (``None`` unless ``cache`` was set)."""
        return self._cache

    def _headers(self, call: c.Call, idempotency: Optional[str]) -> Optional[Dict[str, str]]:
        headers: Optional[Dict[str, str]] = None
        if call.secret is not None:
            headers = {"content-type": "application/json"}
        if idempotency is not None:
            headers = headers or {}
            headers["idempotency-key"] = idempotency
        return headers

    def _client_headers(self) -> Dict[str, str]:
        # The root key lives in the httpx client's default headers (whose repr httpx
        # masks), so no frame of ours holds it in a local variable.
        return {"authorization": self._auth.expose(), "user-agent": _USER_AGENT}

    def _secrets(self, call: c.Call) -> Tuple[str, ...]:
        root = self._root_key.expose()
        return (root, call.secret.key()) if call.secret is not None else (root,)

    def _lookup(
        self,
        key: str,
        scopes: Tuple[str, ...],
        client_ip: Optional[str],
        audience: Optional[str] = None,
    ) -> Tuple[Optional[VerifyResult], bytes]:
        cache = self._cache
        if cache is None:
            return None, b""
        # Keyed by the address too: a key with an IP allowlist is valid only from some;
        # and by the audience: a token is valid for its audience only.
        material = key.encode("utf-8", "surrogatepass") + b"\0" + (client_ip or "").encode()
        if audience is not None:
            material += b"\0" + audience.encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(material).digest()
        return cache.lookup(digest, scopes), digest

    def _token_answer(
        self, token: str, scopes: Tuple[str, ...], audience: Optional[str], client_ip: Optional[str]
    ) -> Optional[VerifyResult]:
        """A signed token's answer with no call, or ``None`` (ask the server): refused
        offline, or VALID for a key the server vouched for (see :mod:`keyhaven.tokens`)."""
        keys = self._tokens
        if keys is None:
            return None
        checked = keys.check(token, audience=audience, scopes=scopes)
        if isinstance(checked, VerifyResult):
            return checked
        known = self._cache.vouched(checked.sub, client_ip) if self._cache is not None else None
        if known is None:
            return None
        return dataclasses.replace(
            known, scopes=checked.scopes, expires_at=rfc3339(checked.exp), cached=True
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base_url={self.base_url!r}, "
            f"cache={self._cache is not None}, timeout={self.timeout!r}, retries={self.retries!r})"
        )


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError("key must be a str")
    return key


class Client(_Base):
    """A blocking client, safe to share between threads.

    >>> kh = keyhaven.Client("http://127.0.0.1:8080", root_key, cache=True)
    >>> kh.verify(key, scopes=["orders:read"]).valid

    ``timeout`` (seconds) bounds each attempt; a call that got no answer (connection
    refused or reset, timeout) is tried ``retries`` more times with backoff; an answer
    from the server is never retried. ``cache=True`` (or a :class:`CacheOptions`) turns
    on the local verify cache, which a daemon thread keeps coherent by following
    ``GET /v1/changes`` (started by the first :meth:`verify`).
    """

    def __init__(
        self,
        base_url: str,
        root_key: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        cache: Union[bool, CacheOptions] = False,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(base_url, root_key, timeout, retries, cache)
        self._transport = transport
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=self._client_headers()
        )
        self._follower: Optional[ThreadFollower] = None

    # -- verify -----------------------------------------------------------------------

    def verify(
        self,
        key: str,
        scopes: Scopes = None,
        cost: Optional[int] = None,
        ratelimits: Optional[Sequence[c.NamedLimit]] = None,
        client_ip: Optional[str] = None,
        permissions: Optional[str] = None,
        audience: Optional[str] = None,
    ) -> VerifyResult:
        """Checks a presented key (``POST /v1/keys/verify``), from the cache when it may.

        ``scopes``: scopes the key must hold (else ``INSUFFICIENT_SCOPES``); ``cost``:
        units taken from its limits and quota (default 1); ``ratelimits``: only these
        named limits (names, or ``{"name", "cost"}``); ``client_ip``: the address that
        presented the key, checked against IP allowlists (``FORBIDDEN_IP``) and used by
        the server's failed-verification limiter; ``permissions``: a permission query
        (``"documents.read AND (documents.write OR admin)"``; else
        ``INSUFFICIENT_PERMISSIONS``, with ``missing_permissions``), never answered from
        the cache; ``audience``: for a signed token, the audience this service is.

        A signed token (``POST /v1/tokens``) is checked offline against the server's
        JWKS (see :mod:`keyhaven.tokens`): refusals need no call, and with the cache on,
        a key the server vouched for has its tokens answered here.
        """
        key = _check_key(key)
        wanted = c.scope_tuple(scopes)
        token = self._tokens is not None and looks_like_token(key)
        if token:
            self._refresh_jwks(key)
            if permissions is None and ratelimits is None:
                if self._cache is not None and (self._follower is None or self._follower.done()):
                    self._start_follower()
                answer = self._token_answer(key, wanted, audience, client_ip)
                if answer is not None:
                    return answer
        # A cached answer knows the key's scopes, not its permissions.
        cache = self._cache if permissions is None else None
        digest, before = b"", (0, False)
        if cache is not None:
            if self._follower is None or self._follower.done():
                self._start_follower()
            hit, digest = self._lookup(key, wanted, client_ip, audience)
            if hit is not None:
                return hit
            before = cache.before_call()
        body = SecretBody(
            c.verify_body(key, wanted, cost, ratelimits, client_ip, permissions, audience), key
        )
        del key  # from here on only in `body`, which never shows itself
        data = self._send(c.Call("POST", "/v1/keys/verify", secret=body))
        result = VerifyResult.from_json(data)
        if cache is not None and ratelimits is None:
            if token:
                cache.vouch(result, client_ip, before)
            else:
                cache.store(digest, result, before)
        return result

    def _refresh_jwks(self, token: str) -> None:
        keys = self._tokens
        if keys is None or not (keys.due() or (not keys.knows(token) and keys.due(refetch=True))):
            return
        try:
            response = self._http.get("/.well-known/jwks.json")
            keys.load(response.json() if response.status_code == 200 else None)
        except (httpx.HTTPError, ValueError):
            keys.load(None)

    def _start_follower(self) -> None:
        with self._lock:
            if self._follower is not None or self._closed or self._cache is None:
                return
            follower = ThreadFollower(
                f"{self.base_url}/v1/changes", self._auth.expose(), self._cache, self.timeout,
                transport=self._transport,
            )
            follower.start()
            self._follower = follower

    # -- any call ---------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """Any API call: ``request("GET", "/v1/keys", params={"limit": 10})``. Returns the
        decoded JSON answer (``None`` for 204); raises :class:`KeyhavenError`."""
        return self._send(c.Call(method.upper(), path, c.params(**(params or {})), json))

    def _send(self, call: c.Call) -> Any:
        idempotency = idempotency_key(call.method, call.path)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    content=call.secret.expose() if call.secret is not None else None,
                    headers=self._headers(call, idempotency),
                )
            except RETRYABLE as e:
                if attempt > self.retries or not may_resend(e, call.method, call.path, idempotency):
                    raise network_error(e, call.method, call.path, attempt) from None
                time.sleep(backoff(attempt))
                continue
            except httpx.HTTPError as e:
                raise network_error(e, call.method, call.path, attempt) from None
            if response.status_code >= 400:
                raise answer_error(response, call.method, call.path, self._secrets(call))
            return decode(response, call.method, call.path)

    # -- keyspaces --------------------------------------------------------------------

    def create_keyspace(
        self,
        name: str,
        prefix: str,
        *,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        max_key_age_seconds: Optional[int] = None,
        default_grace_seconds: Optional[int] = None,
        expiry_warning_seconds: Optional[int] = None,
        leak_policy: Optional[str] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> Keyspace:
        """``POST /v1/keyspaces`` (``extra``: further fields such as ``branding``)."""
        fields = c.body(
            name=name, prefix=prefix, ratelimits=ratelimits, max_key_age_seconds=max_key_age_seconds,
            default_grace_seconds=default_grace_seconds,
            expiry_warning_seconds=expiry_warning_seconds, leak_policy=leak_policy,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(Keyspace, self._send(c.Call("POST", "/v1/keyspaces", json={**fields, **(extra or {})})))

    def get_keyspace(self, keyspace_id: str) -> Keyspace:
        return cast(Keyspace, self._send(c.Call("GET", f"/v1/keyspaces/{c.seg(keyspace_id)}")))

    def list_keyspaces(self, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> Page:
        return cast(Page, self._send(c.Call("GET", "/v1/keyspaces", c.params(limit=limit, cursor=cursor))))

    def update_keyspace(self, keyspace_id: str, changes: Mapping[str, Any]) -> Keyspace:
        return cast(Keyspace, self._send(c.Call("PATCH", f"/v1/keyspaces/{c.seg(keyspace_id)}", json=dict(changes))))

    def delete_keyspace(self, keyspace_id: str) -> None:
        self._send(c.Call("DELETE", f"/v1/keyspaces/{c.seg(keyspace_id)}"))

    # -- keys -------------------------------------------------------------------------

    def create_key(
        self,
        keyspace_id: str,
        *,
        owner_id: Optional[str] = None,
        name: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        meta: Optional[Mapping[str, Any]] = None,
        expires_at: Optional[str] = None,
        enabled: Optional[bool] = None,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        quota: Optional[Mapping[str, Any]] = None,
        recoverable: Optional[bool] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
    ) -> CreatedKey:
        """``POST /v1/keys``: the answer's ``key`` is the plaintext, shown this once."""
        fields = c.body(
            keyspace_id=keyspace_id, owner_id=owner_id, name=name,
            scopes=list(scopes) if scopes is not None else None,
            meta=dict(meta) if meta is not None else None, expires_at=expires_at,
            enabled=enabled, ratelimits=list(ratelimits) if ratelimits is not None else None,
            quota=dict(quota) if quota is not None else None, recoverable=recoverable,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(CreatedKey, self._send(c.Call("POST", "/v1/keys", json=fields)))

    def get_key(self, key_id: str) -> Key:
        return cast(Key, self._send(c.Call("GET", f"/v1/keys/{c.seg(key_id)}")))

    def list_keys(
        self,
        *,
        keyspace_id: Optional[str] = None,
        owner_id: Optional[str] = None,
        search: Optional[str] = None,
        state: Optional[str] = None,
        sort: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Page:
        query = c.params(
            keyspace_id=keyspace_id, owner_id=owner_id, search=search, state=state, sort=sort,
            limit=limit, cursor=cursor,
        )
        return cast(Page, self._send(c.Call("GET", "/v1/keys", query)))

    def iter_keys(self, **filters: Any) -> Iterator[Key]:
        """Every key matching ``filters`` (as :meth:`list_keys`), page after page."""
        cursor: Optional[str] = filters.pop("cursor", None)
        while True:
            page = self.list_keys(cursor=cursor, **filters)
            for item in page["data"]:
                yield cast(Key, item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def update_key(self, key_id: str, changes: Mapping[str, Any]) -> Key:
        """``PATCH /v1/keys/{key_id}``: ``None`` values clear a field."""
        return cast(Key, self._send(c.Call("PATCH", f"/v1/keys/{c.seg(key_id)}", json=dict(changes))))

    def revoke_key(self, key_id: str, reason: Optional[str] = None) -> Key:
        return cast(Key, self._send(c.Call("POST", f"/v1/keys/{c.seg(key_id)}/revoke", json=c.body(reason=reason))))

    def rotate_key(self, key_id: str, grace_period_seconds: Optional[int] = None) -> CreatedKey:
        """A successor with the same settings (plaintext once); the old key verifies
        until its grace ends."""
        fields = c.body(grace_period_seconds=grace_period_seconds)
        return cast(CreatedKey, self._send(c.Call("POST", f"/v1/keys/{c.seg(key_id)}/rotate", json=fields)))

    def delete_key(self, key_id: str) -> None:
        self._send(c.Call("DELETE", f"/v1/keys/{c.seg(key_id)}"))

    def key_usage(
        self,
        key_id: str,
        *,
        start: Optional[str] = None,
        end: Optional[str] = None,
        granularity: Optional[str] = None,
    ) -> Dict[str, Any]:
        """``GET /v1/keys/{key_id}/usage``: verifications by outcome per bucket."""
        query = c.params(**{"from": start, "to": end, "granularity": granularity})
        return cast(Dict[str, Any], self._send(c.Call("GET", f"/v1/keys/{c.seg(key_id)}/usage", query)))

    # -- owners -----------------------------------------------------------------------

    def create_owner(
        self,
        external_id: str,
        *,
        name: Optional[str] = None,
        meta: Optional[Mapping[str, Any]] = None,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        quota: Optional[Mapping[str, Any]] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
    ) -> Owner:
        fields = c.body(
            external_id=external_id, name=name, meta=dict(meta) if meta is not None else None,
            ratelimits=list(ratelimits) if ratelimits is not None else None,
            quota=dict(quota) if quota is not None else None,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(Owner, self._send(c.Call("POST", "/v1/owners", json=fields)))

    def get_owner(self, owner_id: str) -> Owner:
        return cast(Owner, self._send(c.Call("GET", f"/v1/owners/{c.seg(owner_id)}")))

    def list_owners(
        self, *, external_id: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> Page:
        query = c.params(external_id=external_id, limit=limit, cursor=cursor)
        return cast(Page, self._send(c.Call("GET", "/v1/owners", query)))

    # -- audit ------------------------------------------------------------------------

    def list_audit_events(
        self,
        *,
        keyspace_id: Optional[str] = None,
        target_id: Optional[str] = None,
        action: Optional[str] = None,
        actor: Optional[str] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Page:
        """``GET /v1/audit-events``, newest first."""
        query = c.params(
            keyspace_id=keyspace_id, target_id=target_id, action=action, actor=actor, since=since,
            until=until, limit=limit, cursor=cursor,
        )
        return cast(Page, self._send(c.Call("GET", "/v1/audit-events", query)))

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Stops the change-stream thread and closes connections."""
        with self._lock:
            self._closed = True
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()


class AsyncClient(_Base):
    """The asyncio twin of :class:`Client`: the same methods, awaited.

    The change stream is followed by a task on the event loop of the first
    :meth:`verify`; use one ``AsyncClient`` per event loop, and ``await aclose()`` (or
    ``async with``) to stop it.
    """

    def __init__(
        self,
        base_url: str,
        root_key: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        cache: Union[bool, CacheOptions] = False,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(base_url, root_key, timeout, retries, cache)
        self._transport = transport
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=self._client_headers()
        )
        self._follower: Optional[TaskFollower] = None

    async def verify(
        self,
        key: str,
        scopes: Scopes = None,
        cost: Optional[int] = None,
        ratelimits: Optional[Sequence[c.NamedLimit]] = None,
        client_ip: Optional[str] = None,
        permissions: Optional[str] = None,
        audience: Optional[str] = None,
    ) -> VerifyResult:
        """As :meth:`Client.verify`."""
        key = _check_key(key)
        wanted = c.scope_tuple(scopes)
        token = self._tokens is not None and looks_like_token(key)
        if token:
            await self._refresh_jwks(key)
            if permissions is None and ratelimits is None:
                if self._cache is not None and (self._follower is None or self._follower.done()):
                    self._start_follower()
                answer = self._token_answer(key, wanted, audience, client_ip)
                if answer is not None:
                    return answer
        # A cached answer knows the key's scopes, not its permissions.
        cache = self._cache if permissions is None else None
        digest, before = b"", (0, False)
        if cache is not None:
            if self._follower is None or self._follower.done():
                self._start_follower()
            hit, digest = self._lookup(key, wanted, client_ip, audience)
            if hit is not None:
                return hit
            before = cache.before_call()
        body = SecretBody(
            c.verify_body(key, wanted, cost, ratelimits, client_ip, permissions, audience), key
        )
        del key  # from here on only in `body`, which never shows itself
        data = await self._send(c.Call("POST", "/v1/keys/verify", secret=body))
        result = VerifyResult.from_json(data)
        if cache is not None and ratelimits is None:
            if token:
                cache.vouch(result, client_ip, before)
            else:
                cache.store(digest, result, before)
        return result

    async def _refresh_jwks(self, token: str) -> None:
        keys = self._tokens
        if keys is None or not (keys.due() or (not keys.knows(token) and keys.due(refetch=True))):
            return
        try:
            response = await self._http.get("/.well-known/jwks.json")
            keys.load(response.json() if response.status_code == 200 else None)
        except (httpx.HTTPError, ValueError):
            keys.load(None)

    def _start_follower(self) -> None:
        if self._closed or self._cache is None:
            return
        if self._follower is not None and not self._follower.done():
            return
        follower = TaskFollower(
            f"{self.base_url}/v1/changes", self._auth.expose(), self._cache, self.timeout,
            transport=self._transport,
        )
        follower.start()
        self._follower = follower

    async def request(
        self,
        method: str,
        path: str,
        json: Any = None,
        params: Optional[Mapping[str, Any]] = None,
    ) -> Any:
        """As :meth:`Client.request`."""
        return await self._send(c.Call(method.upper(), path, c.params(**(params or {})), json))

    async def _send(self, call: c.Call) -> Any:
        idempotency = idempotency_key(call.method, call.path)
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    json=call.json,
                    content=call.secret.expose() if call.secret is not None else None,
                    headers=self._headers(call, idempotency),
                )
            except RETRYABLE as e:
                if attempt > self.retries or not may_resend(e, call.method, call.path, idempotency):
                    raise network_error(e, call.method, call.path, attempt) from None
                await asyncio.sleep(backoff(attempt))
                continue
            except httpx.HTTPError as e:
                raise network_error(e, call.method, call.path, attempt) from None
            if response.status_code >= 400:
                raise answer_error(response, call.method, call.path, self._secrets(call))
            return decode(response, call.method, call.path)

    async def create_keyspace(
        self,
        name: str,
        prefix: str,
        *,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        max_key_age_seconds: Optional[int] = None,
        default_grace_seconds: Optional[int] = None,
        expiry_warning_seconds: Optional[int] = None,
        leak_policy: Optional[str] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
        extra: Optional[Mapping[str, Any]] = None,
    ) -> Keyspace:
        fields = c.body(
            name=name, prefix=prefix, ratelimits=ratelimits, max_key_age_seconds=max_key_age_seconds,
            default_grace_seconds=default_grace_seconds,
            expiry_warning_seconds=expiry_warning_seconds, leak_policy=leak_policy,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(Keyspace, await self._send(c.Call("POST", "/v1/keyspaces", json={**fields, **(extra or {})})))

    async def get_keyspace(self, keyspace_id: str) -> Keyspace:
        return cast(Keyspace, await self._send(c.Call("GET", f"/v1/keyspaces/{c.seg(keyspace_id)}")))

    async def list_keyspaces(self, *, limit: Optional[int] = None, cursor: Optional[str] = None) -> Page:
        return cast(Page, await self._send(c.Call("GET", "/v1/keyspaces", c.params(limit=limit, cursor=cursor))))

    async def update_keyspace(self, keyspace_id: str, changes: Mapping[str, Any]) -> Keyspace:
        call = c.Call("PATCH", f"/v1/keyspaces/{c.seg(keyspace_id)}", json=dict(changes))
        return cast(Keyspace, await self._send(call))

    async def delete_keyspace(self, keyspace_id: str) -> None:
        await self._send(c.Call("DELETE", f"/v1/keyspaces/{c.seg(keyspace_id)}"))

    async def create_key(
        self,
        keyspace_id: str,
        *,
        owner_id: Optional[str] = None,
        name: Optional[str] = None,
        scopes: Optional[Sequence[str]] = None,
        meta: Optional[Mapping[str, Any]] = None,
        expires_at: Optional[str] = None,
        enabled: Optional[bool] = None,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        quota: Optional[Mapping[str, Any]] = None,
        recoverable: Optional[bool] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
    ) -> CreatedKey:
        fields = c.body(
            keyspace_id=keyspace_id, owner_id=owner_id, name=name,
            scopes=list(scopes) if scopes is not None else None,
            meta=dict(meta) if meta is not None else None, expires_at=expires_at,
            enabled=enabled, ratelimits=list(ratelimits) if ratelimits is not None else None,
            quota=dict(quota) if quota is not None else None, recoverable=recoverable,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(CreatedKey, await self._send(c.Call("POST", "/v1/keys", json=fields)))

    async def get_key(self, key_id: str) -> Key:
        return cast(Key, await self._send(c.Call("GET", f"/v1/keys/{c.seg(key_id)}")))

    async def list_keys(
        self,
        *,
        keyspace_id: Optional[str] = None,
        owner_id: Optional[str] = None,
        search: Optional[str] = None,
        state: Optional[str] = None,
        sort: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Page:
        query = c.params(
            keyspace_id=keyspace_id, owner_id=owner_id, search=search, state=state, sort=sort,
            limit=limit, cursor=cursor,
        )
        return cast(Page, await self._send(c.Call("GET", "/v1/keys", query)))

    async def iter_keys(self, **filters: Any) -> AsyncIterator[Key]:
        cursor: Optional[str] = filters.pop("cursor", None)
        while True:
            page = await self.list_keys(cursor=cursor, **filters)
            for item in page["data"]:
                yield cast(Key, item)
            cursor = page.get("next_cursor")
            if not cursor:
                return

    async def update_key(self, key_id: str, changes: Mapping[str, Any]) -> Key:
        return cast(Key, await self._send(c.Call("PATCH", f"/v1/keys/{c.seg(key_id)}", json=dict(changes))))

    async def revoke_key(self, key_id: str, reason: Optional[str] = None) -> Key:
        call = c.Call("POST", f"/v1/keys/{c.seg(key_id)}/revoke", json=c.body(reason=reason))
        return cast(Key, await self._send(call))

    async def rotate_key(self, key_id: str, grace_period_seconds: Optional[int] = None) -> CreatedKey:
        fields = c.body(grace_period_seconds=grace_period_seconds)
        return cast(CreatedKey, await self._send(c.Call("POST", f"/v1/keys/{c.seg(key_id)}/rotate", json=fields)))

    async def delete_key(self, key_id: str) -> None:
        await self._send(c.Call("DELETE", f"/v1/keys/{c.seg(key_id)}"))

    async def key_usage(
        self,
        key_id: str,
        *,
        start: Optional[str] = None,
        end: Optional[str] = None,
        granularity: Optional[str] = None,
    ) -> Dict[str, Any]:
        query = c.params(**{"from": start, "to": end, "granularity": granularity})
        return cast(Dict[str, Any], await self._send(c.Call("GET", f"/v1/keys/{c.seg(key_id)}/usage", query)))

    async def create_owner(
        self,
        external_id: str,
        *,
        name: Optional[str] = None,
        meta: Optional[Mapping[str, Any]] = None,
        ratelimits: Optional[Sequence[RatelimitSpec]] = None,
        quota: Optional[Mapping[str, Any]] = None,
        ip_allowlist: Optional[Sequence[str]] = None,
    ) -> Owner:
        fields = c.body(
            external_id=external_id, name=name, meta=dict(meta) if meta is not None else None,
            ratelimits=list(ratelimits) if ratelimits is not None else None,
            quota=dict(quota) if quota is not None else None,
            ip_allowlist=list(ip_allowlist) if ip_allowlist is not None else None,
        )
        return cast(Owner, await self._send(c.Call("POST", "/v1/owners", json=fields)))

    async def get_owner(self, owner_id: str) -> Owner:
        return cast(Owner, await self._send(c.Call("GET", f"/v1/owners/{c.seg(owner_id)}")))

    async def list_owners(
        self, *, external_id: Optional[str] = None, limit: Optional[int] = None, cursor: Optional[str] = None
    ) -> Page:
        query = c.params(external_id=external_id, limit=limit, cursor=cursor)
        return cast(Page, await self._send(c.Call("GET", "/v1/owners", query)))

    async def list_audit_events(
        self,
        *,
        keyspace_id: Optional[str] = None,
        target_id: Optional[str] = None,
        action: Optional[str] = None,
        actor: Optional[str] = None,
        since: Optional[str] = None,
        until: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> Page:
        query = c.params(
            keyspace_id=keyspace_id, target_id=target_id, action=action, actor=actor, since=since,
            until=until, limit=limit, cursor=cursor,
        )
        return cast(Page, await self._send(c.Call("GET", "/v1/audit-events", query)))

    async def aclose(self) -> None:
        """Stops the change-stream task and closes connections."""
        self._closed = True
        follower, self._follower = self._follower, None
        if follower is not None:
            await follower.stop()
        await self._http.aclose()

    close = aclose

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

