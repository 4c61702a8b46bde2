"""Signed tokens (``POST /v1/tokens``), checked offline against the server's JWKS.

The same rules as the Rust client (``crates/client/src/tokens.rs``) and the server
(``keyhaven_core::token``):

- Only compact JWS tokens are checked here (biscuits go to the server, which verifies
  them too). The header must say ``alg: EdDSA`` (``none``, ``HS256`` and the rest are
  refused before any key is looked at) and carry no ``crit``; its ``kid`` must be one of
  the JWKS's Ed25519 keys; the signature is checked with ``cryptography``.
- A token past its ``exp`` is ``EXPIRED``; a token naming an audience is refused
  (``NOT_FOUND``) unless the verifier is that audience; scopes asked for must be among
  the token's (``INSUFFICIENT_SCOPES``). Those refusals need no call.
- A token that passes still needs its key to work: the first token of a key goes to the
  server, and with the cache on its VALID answer (for an unlimited key) vouches for the
  key's other tokens until the change stream names the key (:class:`VerifyCache`).

Without the ``cryptography`` package (``pip install keyhaven[tokens]``) every token goes
to the server.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple, Union

try:  # optional: offline checks need it
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - exercised only without the extra
    Ed25519PublicKey = None  # type: ignore[assignment,misc]
    InvalidSignature = Exception  # type: ignore[assignment,misc]

from .cache import scopes_grant
from .models import VerifyResult

__all__ = ["TokenKeys", "Claims", "looks_like_token", "offline_available"]

#: Longest token checked; a longer string is MALFORMED.
MAX_TOKEN_LEN = 16 * 1024
#: A fetched JWKS is used this long before it is fetched again (seconds).
JWKS_TTL = 300.0
#: Least time between two fetches for a ``kid`` the JWKS lacks (seconds).
REFETCH_GAP = 10.0


def offline_available() -> bool:
    """Whether tokens can be checked here (the ``cryptography`` package is installed)."""
    return Ed25519PublicKey is not None


def looks_like_token(presented: str) -> bool:
    """Whether ``presented`` has a compact JWS's shape (Keyhaven keys never do)."""
    return presented.startswith("eyJ") and presented.count(".") == 2 and len(presented) <= MAX_TOKEN_LEN


def _b64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass(frozen=True)
class Claims:
    """What a verified token says."""

    sub: str
    ks: str
    scopes: Tuple[str, ...]
    exp: int
    owner: Optional[str] = None
    aud: Optional[str] = None


class TokenKeys:
    """The JWKS as last fetched: Ed25519 public keys by ``kid``."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._keys: Optional[Dict[str, Any]] = None
        self._at: Optional[float] = None

    def due(self, refetch: bool = False) -> bool:
        """Whether the JWKS should be fetched now."""
        if self._keys is None or self._at is None:
            return True
        age = self._clock() - self._at
        return age >= JWKS_TTL or (refetch and age >= REFETCH_GAP)

    def load(self, document: Any) -> None:
        """Takes a fetched JWKS document (``None``: the fetch failed; keep what we had)."""
        self._at = self._clock()
        if not isinstance(document, Mapping):
            return
        keys: Dict[str, Any] = {}
        for jwk in document.get("keys") or ():
            if not isinstance(jwk, Mapping) or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
                continue
            kid, x = jwk.get("kid"), jwk.get("x")
            if not isinstance(kid, str) or not isinstance(x, str) or Ed25519PublicKey is None:
                continue
            try:
                keys[kid] = Ed25519PublicKey.from_public_bytes(_b64(x))
            except (ValueError, binascii.Error):
                continue
        self._keys = keys

    def knows(self, token: str) -> bool:
        """Whether the JWKS has the key ``token``'s header names (unreadable: true, so
        no fetch is made for junk)."""
        try:
            kid = json.loads(_b64(token.split(".")[0])).get("kid")
        except (ValueError, binascii.Error, AttributeError, RecursionError):
            return True
        return self._keys is not None and kid in self._keys

    def check(
        self,
        token: str,
        *,
        audience: Optional[str],
        scopes: Tuple[str, ...],
        now: Optional[float] = None,
    ) -> Union[Claims, VerifyResult]:
        """The token's claims, or the refusal (a :class:`VerifyResult`)."""
        parts = token.split(".")
        if len(parts) != 3 or len(token) > MAX_TOKEN_LEN:
            return _refused("MALFORMED")
        try:
            header = json.loads(_b64(parts[0]))
            signature = _b64(parts[2])
        except (ValueError, binascii.Error, RecursionError):
            return _refused("MALFORMED")
        if not isinstance(header, Mapping) or header.get("alg") != "EdDSA" or "crit" in header:
            return _refused("NOT_FOUND")
        kid = header.get("kid")
        key = self._keys.get(kid) if self._keys is not None and isinstance(kid, str) else None
        if key is None:
            return _refused("NOT_FOUND")
        try:
            key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"))
            payload = json.loads(_b64(parts[1]))
        except (InvalidSignature, ValueError, binascii.Error, UnicodeEncodeError):
            return _refused("NOT_FOUND")
        except RecursionError:
            return _refused("MALFORMED")
        claims = _claims(payload)
        if claims is None:
            return _refused("MALFORMED")
        if claims.exp <= (time.time() if now is None else now):
            return _refused("EXPIRED")
        if claims.aud is not None and claims.aud != audience:
            return _refused("NOT_FOUND")
        if not all(scopes_grant(claims.scopes, s) for s in scopes):
            return VerifyResult(
                valid=False, code="INSUFFICIENT_SCOPES", key_id=claims.sub, keyspace_id=claims.ks, token=True
            )
        return claims


def _refused(code: str) -> VerifyResult:
    return VerifyResult(valid=False, code=code)


def _claims(payload: Any) -> Optional[Claims]:
    if not isinstance(payload, Mapping):
        return None
    sub, ks, exp, scopes = payload.get("sub"), payload.get("ks"), payload.get("exp"), payload.get("scopes")
    if not isinstance(sub, str) or not isinstance(ks, str) or not isinstance(exp, int):
        return None
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        return None
    owner, aud = payload.get("owner"), payload.get("aud")
    return Claims(
        sub=sub,
        ks=ks,
        scopes=tuple(scopes),
        exp=exp,
        owner=owner if isinstance(owner, str) else None,
        aud=aud if isinstance(aud, str) else None,
    )


def rfc3339(unix: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(unix))
