"""Django integration: a middleware that verifies every request's key.

.. code-block:: python

    # settings.py
    MIDDLEWARE = [..., "keyhaven.django.KeyhavenMiddleware"]
    KEYHAVEN = {
        "URL": "http://127.0.0.1:8080",
        "ROOT_KEY": os.environ["KEYHAVEN_ROOT_KEY"],   # a root key with keys:verify
        "CACHE": True,                  # or {"ttl_ms": ..., "coherence_ms": ...}
        "EXEMPT_PATHS": ["/health", "/admin"],
    }

    # views.py
    from keyhaven.django import require_scopes

    @require_scopes("orders:read")
    def orders(request):
        return JsonResponse({"owner": request.keyhaven.owner_external_id})

Settings (``KEYHAVEN``): ``URL`` and ``ROOT_KEY`` (required); ``TIMEOUT`` (seconds,
default 5), ``RETRIES`` (2), ``CACHE`` (``False``; ``True`` or a dict of
:class:`~keyhaven.CacheOptions` fields turns the local cache on); ``SCOPES`` every request
needs; ``COST``; ``KEY_HEADER`` (read before ``Authorization: Bearer`` and ``X-API-Key``);
``TRUSTED_PROXY_HOPS`` (proxies in front appending to ``X-Forwarded-For``);
``TOKEN_AUDIENCE`` (the audience this API is, for signed tokens);
``EXEMPT_PATHS`` (path prefixes, whole segments, that need no key: ``request.keyhaven`` is
``None`` there); ``FAIL_OPEN`` (``False``: a request is answered 503 when Keyhaven cannot
be reached; ``True`` lets it through with ``request.keyhaven = None``).

A verified request carries the caller as ``request.keyhaven`` (a
:class:`~keyhaven.Identity`); refusals are ``application/problem+json`` with the
gateway's statuses and headers. A key with rate limits gets ``RateLimit`` and
``RateLimit-Policy`` on the response.
"""

from __future__ import annotations

import functools
import threading
from typing import Any, Callable, Mapping, Optional, Tuple, TypeVar, Union

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from ._calls import scope_tuple
from .client import Client
from .errors import KeyhavenError
from .gateway import (
    PROBLEM_CONTENT_TYPE,
    Identity,
    Refusal,
    client_address,
    decide,
    insufficient_scopes,
    is_exempt,
    missing_key,
    presented_key,
    ratelimit_headers,
    unavailable,
)
from .models import CacheOptions

__all__ = [
    "KeyhavenMiddleware",
    "close_client",
    "get_client",
    "problem_response",
    "require_scopes",
    "verify_request",
]

_client: Optional[Client] = None
_client_lock = threading.Lock()

F = TypeVar("F", bound=Callable[..., HttpResponse])


def _settings() -> Mapping[str, Any]:
    conf = getattr(settings, "KEYHAVEN", None)
    if not isinstance(conf, Mapping):
        raise RuntimeError("settings.KEYHAVEN must be a dict with at least URL and ROOT_KEY")
    return conf


def get_client() -> Client:
    """The process's :class:`~keyhaven.Client`, built once from ``settings.KEYHAVEN``
    (shared by the middleware and :mod:`keyhaven.drf`)."""
    global _client
    client = _client
    if client is not None:
        return client
    with _client_lock:
        if _client is None:
            conf = _settings()
            if not conf.get("URL") or not conf.get("ROOT_KEY"):
                raise RuntimeError("settings.KEYHAVEN needs URL and ROOT_KEY")
            cache_setting = conf.get("CACHE", False)
            cache: Union[bool, CacheOptions] = (
                CacheOptions(**cache_setting) if isinstance(cache_setting, Mapping) else bool(cache_setting)
            )
            _client = Client(
                conf["URL"],
                conf["ROOT_KEY"],
                timeout=float(conf.get("TIMEOUT", 5.0)),
                retries=int(conf.get("RETRIES", 2)),
                cache=cache,
            )
        return _client


def close_client() -> None:
    """Closes the shared client (the next :func:`get_client` builds a new one)."""
    global _client
    with _client_lock:
        client, _client = _client, None
    if client is not None:
        client.close()


def problem_response(refusal: Refusal) -> HttpResponse:
    """A refusal as an ``application/problem+json`` response."""
    response = HttpResponse(refusal.body(), status=refusal.status, content_type=PROBLEM_CONTENT_TYPE)
    for name, value in refusal.headers.items():
        response[name] = value
    return response


def verify_request(
    request: HttpRequest,
    client: Client,
    *,
    scopes: Tuple[str, ...] = (),
    cost: Optional[int] = None,
    key_header: Optional[str] = None,
    trusted_proxy_hops: int = 0,
    fail_open: bool = False,
    audience: Optional[str] = None,
) -> Union[Identity, Refusal, None]:
    """Verifies ``request``'s key: the caller, a refusal, or ``None`` (Keyhaven could
    not be reached and ``fail_open`` is set)."""
    key = presented_key(request.headers.get, key_header)
    if key is None:
        return missing_key(key_header)
    ip = client_address(
        request.META.get("REMOTE_ADDR"), request.headers.get("x-forwarded-for"), trusted_proxy_hops
    )
    try:
        result = client.verify(key, scopes, cost, None, ip, audience=audience)
    except KeyhavenError:
        return None if fail_open else unavailable()
    return decide(result)


class KeyhavenMiddleware:
    """Verifies the key of every request outside ``EXEMPT_PATHS`` (see the module
    documentation for the settings)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        conf = _settings()
        self.scopes = scope_tuple(conf.get("SCOPES"))
        self.cost: Optional[int] = conf.get("COST")
        self.key_header: Optional[str] = conf.get("KEY_HEADER")
        self.hops = int(conf.get("TRUSTED_PROXY_HOPS", 0))
        self.fail_open = bool(conf.get("FAIL_OPEN", False))
        self.audience: Optional[str] = conf.get("TOKEN_AUDIENCE")
        self.exempt = tuple(conf.get("EXEMPT_PATHS", ()))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.keyhaven = None
        if is_exempt(request.path_info, self.exempt):
            return self.get_response(request)
        outcome = verify_request(
            request,
            get_client(),
            scopes=self.scopes,
            cost=self.cost,
            key_header=self.key_header,
            trusted_proxy_hops=self.hops,
            fail_open=self.fail_open,
            audience=self.audience,
        )
        if isinstance(outcome, Refusal):
            return problem_response(outcome)
        request.keyhaven = outcome
        response = self.get_response(request)
        if outcome is not None and outcome.ratelimits:
            for name, value in ratelimit_headers(outcome.ratelimits).items():
                response[name] = value
        return response


def require_scopes(*scopes: str) -> Callable[[F], F]:
    """A view decorator: 403 ``insufficient_scopes`` unless the verified key holds every
    one of ``scopes`` (decided locally from ``request.keyhaven`` with Keyhaven's scope
    rule); 401 ``missing_key`` on a request the middleware did not verify."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            identity: Optional[Identity] = getattr(request, "keyhaven", None)
            if identity is None:
                return problem_response(missing_key(_settings().get("KEY_HEADER")))
            if not identity.has_scopes(*scopes):
                return problem_response(insufficient_scopes())
            return view(request, *args, **kwargs)

        return wrapped  # type: ignore[return-value]

    return decorate

