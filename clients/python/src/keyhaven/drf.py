"""Django REST Framework integration: an authentication class, scope permissions and an
exception handler that writes refusals as ``application/problem+json``.

.. code-block:: python

    # settings.py (KEYHAVEN as for keyhaven.django: URL, ROOT_KEY, CACHE, ...)
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["keyhaven.drf.KeyhavenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["keyhaven.drf.HasScopes"],
        "EXCEPTION_HANDLER": "keyhaven.drf.exception_handler",
    }

    # views.py
    class Orders(APIView):
        required_scopes = ["orders:read"]          # read by HasScopes
        def get(self, request):
            return Response({"owner": request.auth.owner_external_id})

``request.auth`` is the caller's :class:`~keyhaven.Identity` and ``request.user`` a
:class:`KeyhavenUser` (``is_authenticated``, ``key_id``, ``identity``). A request without
a key is left unauthenticated (so other authentication classes may try), and the
permission answers 401 ``missing_key``; an unusable key is 401 with
``error="invalid_token"``; missing scopes 403; an exhausted limit 429 with
``Retry-After``; Keyhaven unreachable 503 (unless ``FAIL_OPEN``). With
:func:`exception_handler` these are problem+json exactly as the gateway writes them;
with DRF's default handler the status and the ``WWW-Authenticate`` and ``Retry-After``
headers are the same but the body is DRF's ``{"detail": "..."}`` (``application/json``).
If :class:`keyhaven.django.KeyhavenMiddleware` already verified the request, its
identity is reused and the key is not verified twice.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Tuple, Type

from django.http import HttpResponseBase
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException, NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from ._calls import scope_tuple
from .django import _settings, get_client, problem_response, verify_request
from .gateway import Identity, Refusal, insufficient_scopes, missing_key

__all__ = [
    "HasScopes",
    "KeyhavenAuthentication",
    "KeyhavenRefusedError",
    "KeyhavenUser",
    "exception_handler",
    "require_scopes",
]


class KeyhavenRefusedError(APIException):
    """A refusal, as DRF's exception: status, ``auth_header`` (``WWW-Authenticate``)
    and ``wait`` (``Retry-After``) set so DRF's own handler answers with them too."""

    def __init__(self, refusal: Refusal) -> None:
        self.status_code = refusal.status
        super().__init__(detail=refusal.title, code=refusal.code)
        self.refusal = refusal
        challenge = refusal.headers.get("WWW-Authenticate")
        if challenge:
            self.auth_header = challenge
        retry = refusal.headers.get("Retry-After")
        if retry:
            self.wait = int(retry)


class KeyhavenUser:
    """``request.user`` for a verified key: the key, not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.key_id = identity.key_id
        self.pk = self.id = identity.key_id
        self.username = identity.key_id

    def __str__(self) -> str:
        return f"keyhaven:{self.key_id}"

    def __repr__(self) -> str:
        return f"KeyhavenUser(key_id={self.key_id!r})"


class KeyhavenAuthentication(BaseAuthentication):
    """Verifies the request's key with the client of ``settings.KEYHAVEN``.

    ``SCOPES`` and ``COST`` from the settings (or a view's ``keyhaven_cost``) are sent
    with the verification; per-view scopes are :class:`HasScopes`'s job.
    """

    def authenticate(self, request: Request) -> Optional[Tuple[KeyhavenUser, Identity]]:
        django_request = request._request
        known = getattr(django_request, "keyhaven", None)
        if isinstance(known, Identity):
            return KeyhavenUser(known), known
        conf = _settings()
        view = request.parser_context.get("view") if request.parser_context else None
        outcome = verify_request(
            django_request,
            get_client(),
            scopes=scope_tuple(conf.get("SCOPES")),
            cost=getattr(view, "keyhaven_cost", conf.get("COST")),
            key_header=conf.get("KEY_HEADER"),
            trusted_proxy_hops=int(conf.get("TRUSTED_PROXY_HOPS", 0)),
            fail_open=bool(conf.get("FAIL_OPEN", False)),
            audience=conf.get("TOKEN_AUDIENCE"),
        )
        if isinstance(outcome, Refusal):
            if outcome.code == "missing_key":
                return None
            raise KeyhavenRefusedError(outcome)
        if outcome is None:
            return None
        django_request.keyhaven = outcome
        return KeyhavenUser(outcome), outcome

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


class HasScopes(BasePermission):
    """Allows a request whose key holds every scope of the view's ``required_scopes``
    (none: any verified key). Without a verified key DRF answers 401; with too few
    scopes, 403 ``insufficient_scopes``."""

    scopes: Tuple[str, ...] = ()

    def has_permission(self, request: Request, view: Any) -> bool:
        identity = request.auth
        if not isinstance(identity, Identity):
            return False
        needed = self.scopes + tuple(getattr(view, "required_scopes", ()))
        if not identity.has_scopes(*needed):
            raise KeyhavenRefusedError(insufficient_scopes())
        return True


def require_scopes(*scopes: str) -> Type[HasScopes]:
    """A permission class needing ``scopes`` (besides the view's ``required_scopes``):
    ``permission_classes = [require_scopes("orders:write")]``."""
    return type("RequireScopes", (HasScopes,), {"scopes": tuple(scopes)})


def _uses_keyhaven(context: Mapping[str, Any]) -> bool:
    view = context.get("view")
    classes: Sequence[Any] = getattr(view, "authentication_classes", None) or ()
    return len(classes) > 0 and issubclass(classes[0], KeyhavenAuthentication)


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Optional[HttpResponseBase]:
    """``REST_FRAMEWORK["EXCEPTION_HANDLER"]``: Keyhaven's refusals (and a missing key
    on a view authenticated by Keyhaven first) as problem+json; anything else as DRF's
    default handler answers it."""
    if isinstance(exc, KeyhavenRefusedError):
        return problem_response(exc.refusal)
    if isinstance(exc, NotAuthenticated) and _uses_keyhaven(context):
        return problem_response(missing_key(_settings().get("KEY_HEADER")))
    # Imported here: rest_framework.views loads the authentication classes named in the
    # settings (this module among them) while it is itself being imported.
    from rest_framework.views import exception_handler as drf_exception_handler

    response: Optional[HttpResponseBase] = drf_exception_handler(exc, dict(context))
    return response
