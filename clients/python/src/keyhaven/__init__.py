"""Keyhaven's Python client: verify API keys (with a local cache kept coherent by the
server's change stream), manage keyspaces, keys and owners, and protect FastAPI,
Django and Django REST Framework apps.

The integrations live in their own modules, imported only when used:
:mod:`keyhaven.fastapi`, :mod:`keyhaven.django`, :mod:`keyhaven.drf`.
"""

from ._version import __version__
from .cache import scopes_grant
from . import tokens
from .client import AsyncClient, Client
from .errors import KeyhavenError
from .gateway import Identity, Refusal
from .keys import (
    KeyFormatError,
    ParsedKey,
    checksum_valid,
    display,
    generate_key,
    key_id,
    parse_key,
)
from .models import (
    CacheOptions,
    CreatedKey,
    Key,
    Keyspace,
    Owner,
    Page,
    Ratelimit,
    Rotation,
    VerifyOwner,
    VerifyResult,
)

__all__ = [
    "AsyncClient",
    "CacheOptions",
    "Client",
    "CreatedKey",
    "Identity",
    "Key",
    "KeyFormatError",
    "KeyhavenError",
    "Keyspace",
    "Owner",
    "Page",
    "ParsedKey",
    "Ratelimit",
    "Refusal",
    "Rotation",
    "VerifyOwner",
    "VerifyResult",
    "__version__",
    "checksum_valid",
    "display",
    "generate_key",
    "key_id",
    "parse_key",
    "scopes_grant",
]
