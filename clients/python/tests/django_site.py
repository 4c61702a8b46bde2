"""The Django project of the acceptance tests (settings, views and URLs in one module):
views behind ``KeyhavenMiddleware`` under ``/mw/``, and Django REST Framework views with
``KeyhavenAuthentication`` under ``/drf/`` (exempt from the middleware)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

import keyhaven


def configure(url: str, root_key: str) -> None:
    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="tests-only",
        ALLOWED_HOSTS=["127.0.0.1", "localhost"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=["rest_framework"],
        MIDDLEWARE=["keyhaven.django.KeyhavenMiddleware"],
        DATABASES={},
        USE_TZ=True,
        KEYHAVEN={
            "URL": url,
            "ROOT_KEY": root_key,
            "CACHE": True,
            "EXEMPT_PATHS": ["/drf", "/mw/public"],
        },
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": ["keyhaven.drf.KeyhavenAuthentication"],
            "DEFAULT_PERMISSION_CLASSES": ["keyhaven.drf.HasScopes"],
            "EXCEPTION_HANDLER": "keyhaven.drf.exception_handler",
            "UNAUTHENTICATED_USER": None,
            "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
        },
    )
    django.setup()


def identity_json(caller: Optional[keyhaven.Identity]) -> Dict[str, Any]:
    if caller is None:
        return {"identity": None}
    return {
        "key_id": caller.key_id, "keyspace_id": caller.keyspace_id, "owner_id": caller.owner_id,
        "owner_external_id": caller.owner_external_id, "scopes": list(caller.scopes),
        "ratelimits": [r.remaining for r in caller.ratelimits], "remaining": caller.remaining,
    }


def _views() -> Any:
    # Imported once Django is configured.
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    from keyhaven.django import require_scopes
    from keyhaven.drf import KeyhavenUser
    from keyhaven.drf import require_scopes as drf_require_scopes

    @require_scopes("orders:read")
    def mw_orders(request: HttpRequest) -> HttpResponse:
        return JsonResponse(identity_json(request.keyhaven))  # type: ignore[attr-defined]

    def mw_any(request: HttpRequest) -> HttpResponse:
        return JsonResponse(identity_json(request.keyhaven))  # type: ignore[attr-defined]

    def mw_public(request: HttpRequest) -> HttpResponse:
        return JsonResponse({"identity": request.keyhaven})  # type: ignore[attr-defined]

    class DrfOrders(APIView):
        required_scopes = ["orders:read"]

        def get(self, request: Request) -> Response:
            assert isinstance(request.user, KeyhavenUser) and request.user.is_authenticated
            assert request.user.key_id == request.auth.key_id
            return Response(identity_json(request.auth))

    class DrfWrite(APIView):
        permission_classes = [drf_require_scopes("orders:write")]

        def get(self, request: Request) -> Response:
            return Response(identity_json(request.auth))

    class DrfBehindMiddleware(DrfOrders):
        """Under /mw/: the middleware's identity is reused."""

    return [
        path("mw/orders", mw_orders),
        path("mw/any", mw_any),
        path("mw/public", mw_public),
        path("mw/drf-orders", DrfBehindMiddleware.as_view()),
        path("drf/orders", DrfOrders.as_view()),
        path("drf/write", DrfWrite.as_view()),
    ]


class _LazyPatterns:
    """``urlpatterns``, built on first use (after ``configure``)."""

    _built: Optional[list] = None

    def __iter__(self) -> Any:
        if self._built is None:
            self._built = _views()
        return iter(self._built)

    def __len__(self) -> int:
        return len(list(iter(self)))

    def __getitem__(self, i: int) -> Any:
        return list(iter(self))[i]


urlpatterns = _LazyPatterns()
