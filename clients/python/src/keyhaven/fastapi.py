"""FastAPI (and Starlette) integration: a dependency that verifies the request's key.

.. code-block:: python

    from typing import Annotated
    from fastapi import Depends, FastAPI
    import keyhaven
    from keyhaven.fastapi import install, require_key

    kh = keyhaven.AsyncClient(URL, ROOT_KEY, cache=True)
    app = FastAPI()
    install(app)  # refusals as application/problem+json

    @app.get("/orders")
    async def orders(caller: Annotated[keyhaven.Identity, Depends(require_key(kh, scopes=["orders:read"]))]):
        return {"owner": caller.owner_external_id}

Refusals are raised as :class:`KeyhavenRefused`, a Starlette ``HTTPException`` with the
right status and headers (``WWW-Authenticate``, ``Retry-After``, ``RateLimit``);
:func:`install` registers the handler that writes them as ``application/problem+json``
(without it FastAPI's own handler answers ``{"detail": "<the problem's title>"}`` as
``application/json``, with the same status and headers). On success the identity is
also at ``request.state.keyhaven``, and a key with rate limits gets ``RateLimit`` and
``RateLimit-Policy`` on the response.
"""

from __future__ import annotations

import functools

from typing import Any, Awaitable, Callable, Iterable, Literal, Optional, Sequence, Union, overload

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ._calls import NamedLimit, scope_tuple
from .client import AsyncClient, Client
from .errors import KeyhavenError
from .gateway import (
    PROBLEM_CONTENT_TYPE,
    Identity,
    Refusal,
    client_address,
    decide,
    missing_key,
    presented_key,
    ratelimit_headers,
    unavailable,
)
from .models import VerifyResult

__all__ = ["KeyhavenRefused", "install", "problem_handler", "require_key"]


class KeyhavenRefused(HTTPException):
    """A request refused by :func:`require_key`; ``refusal`` holds the problem."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.status, detail=refusal.title, headers=dict(refusal.headers))
        self.refusal = refusal


async def problem_handler(request: Request, exc: Exception) -> Response:
    """Writes a :class:`KeyhavenRefused` as ``application/problem+json``."""
    if not isinstance(exc, KeyhavenRefused):  # pragma: no cover - registered for it only
        raise exc
    refusal = exc.refusal
    return Response(
        refusal.body(),
        status_code=refusal.status,
        headers=dict(refusal.headers),
        media_type=PROBLEM_CONTENT_TYPE,
    )


def install(app: Any) -> None:
    """Registers :func:`problem_handler` on a FastAPI or Starlette ``app``."""
    app.add_exception_handler(KeyhavenRefused, problem_handler)


Dependency = Callable[[Request, Response], Awaitable[Identity]]
OptionalDependency = Callable[[Request, Response], Awaitable[Optional[Identity]]]


@overload
def require_key(
    client: Union[Client, AsyncClient],
    *,
    scopes: Union[str, Iterable[str], None] = ...,
    cost: Optional[int] = ...,
    ratelimits: Optional[Sequence[NamedLimit]] = ...,
    key_header: Optional[str] = ...,
    trusted_proxy_hops: int = ...,
    audience: Optional[str] = ...,
    fail_open: Literal[False] = ...,
) -> Dependency: ...


@overload
def require_key(
    client: Union[Client, AsyncClient],
    *,
    scopes: Union[str, Iterable[str], None] = ...,
    cost: Optional[int] = ...,
    ratelimits: Optional[Sequence[NamedLimit]] = ...,
    key_header: Optional[str] = ...,
    trusted_proxy_hops: int = ...,
    audience: Optional[str] = ...,
    fail_open: bool,
) -> OptionalDependency: ...


def require_key(
    client: Union[Client, AsyncClient],
    *,
    scopes: Union[str, Iterable[str], None] = None,
    cost: Optional[int] = None,
    ratelimits: Optional[Sequence[NamedLimit]] = None,
    key_header: Optional[str] = None,
    trusted_proxy_hops: int = 0,
    audience: Optional[str] = None,
    fail_open: bool = False,
) -> Union[Dependency, OptionalDependency]:
    """A dependency that verifies the request's key and returns the caller's
    :class:`~keyhaven.Identity`, or refuses the request (401, 403, 429; 503 when
    Keyhaven cannot be asked).

    - ``scopes``, ``cost``, ``ratelimits``: what the route needs (as :meth:`Client.verify`);
    - ``key_header``: a header read before ``Authorization: Bearer`` and ``X-API-Key``;
    - ``trusted_proxy_hops``: proxies in front that append to ``X-Forwarded-For``;
    - ``audience``: the audience this API is, for signed tokens (see :mod:`keyhaven.tokens`);
    - ``fail_open``: when Keyhaven cannot be reached, let the request through with the
      identity ``None`` instead of answering 503. Off by default: fail closed.

    A sync :class:`Client` works too: a cached answer is served inline, a call to the
    server runs in the thread pool.
    """
    wanted = scope_tuple(scopes)
    hops = trusted_proxy_hops

    async def verify(request: Request, key: str) -> VerifyResult:
        socket_ip = request.client.host if request.client else None
        ip = client_address(socket_ip, request.headers.get("x-forwarded-for"), hops)
        # A cached answer first (kept per key and address): it needs no thread.
        if client.cache is not None and client._follower is not None:
            hit = client._lookup(key, wanted, ip, audience)[0]
            if hit is not None:
                return hit
        if isinstance(client, AsyncClient):
            return await client.verify(key, wanted, cost, ratelimits, ip, audience=audience)
        return await run_in_threadpool(
            functools.partial(client.verify, audience=audience), key, wanted, cost, ratelimits, ip
        )

    async def keyhaven_key(request: Request, response: Response) -> Optional[Identity]:
        key = presented_key(request.headers.get, key_header)
        if key is None:
            raise KeyhavenRefused(missing_key(key_header))
        try:
            result = await verify(request, key)
        except KeyhavenError:
            if fail_open:
                request.state.keyhaven = None
                return None
            raise KeyhavenRefused(unavailable()) from None
        outcome = decide(result)
        if isinstance(outcome, Refusal):
            raise KeyhavenRefused(outcome)
        if outcome.ratelimits:
            response.headers.update(ratelimit_headers(outcome.ratelimits))
        request.state.keyhaven = outcome
        return outcome

    return keyhaven_key
