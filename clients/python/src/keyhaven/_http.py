"""Sending one call to Keyhaven: retries on network errors only, errors without
secrets. Shared by the sync and async clients."""

from __future__ import annotations

import json as jsonlib
import random
import uuid
from typing import Any, Iterable, Mapping, Optional, Tuple

import httpx

from .errors import KeyhavenError

#: Failures where no answer came back: the call may be sent again. A timeout while
#: reading the answer is one too (no status line arrived), so every POST the server
#: deduplicates carries an ``Idempotency-Key`` that stays the same across attempts.
RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.ReadTimeout,
    httpx.WriteTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)

#: Failures before the request could have reached the server: no connection was made.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

#: POSTs without ``Idempotency-Key`` that may still be sent again after a timeout:
#: verifications (whose use may then be counted twice, the price of not failing a request
#: over a blip).
_RESENDABLE_POSTS = ("/v1/keys/verify", "/v1/keys/verify/batch")


def may_resend(e: Exception, method: str, path: str, idempotency: Optional[str]) -> bool:
    """Whether a call that failed with ``e`` (one of :data:`RETRYABLE`) may be sent again:
    always when no connection was made; otherwise unless it is a POST the server would
    apply twice (one without an ``Idempotency-Key``, such as a new root key)."""
    if isinstance(e, NOT_SENT) or method != "POST" or idempotency is not None:
        return True
    return path in _RESENDABLE_POSTS


#: Paths (after ``/v1``) whose POST honours ``Idempotency-Key``.
_IDEMPOTENT_POSTS = ("/v1/keyspaces", "/v1/keys", "/v1/owners", "/v1/webhooks")


class Secret:
    """A string that never shows itself in ``repr``, ``str`` or a traceback's locals."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value:
            raise TypeError("root_key must be a non-empty str")
        self._value = value

    def expose(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "<redacted>"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret cannot be pickled")


class SecretBody:
    """A request body that holds a key: kept out of ``repr`` (and so out of a
    traceback's captured locals) until it is handed to httpx."""

    __slots__ = ("_content", "_key")

    def __init__(self, body: Any, key: str) -> None:
        self._content = jsonlib.dumps(body, separators=(",", ":")).encode("utf-8")
        self._key = key

    def expose(self) -> bytes:
        return self._content

    def key(self) -> str:
        return self._key

    def __repr__(self) -> str:
        return "<redacted>"


def backoff(attempt: int) -> float:
    """Seconds before retry number ``attempt`` (1-based): 50 ms doubling, jittered,
    at most 1 s."""
    base: float = min(0.05 * (2 ** (attempt - 1)), 1.0)
    return base * random.uniform(0.5, 1.5)


def idempotency_key(method: str, path: str) -> Optional[str]:
    if method != "POST":
        return None
    if path in _IDEMPOTENT_POSTS or (
        path.startswith("/v1/keys/") and path.endswith(("/revoke", "/rotate"))
    ):
        return str(uuid.uuid4())
    return None


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "<redacted>")
    return text


def network_error(e: Exception, method: str, path: str, attempts: int) -> KeyhavenError:
    timeout = isinstance(e, httpx.TimeoutException)
    code = "timeout" if timeout else "unavailable"
    # httpx's own message for these names the socket error, never the request's
    # headers or body; it is still passed through the redaction by the caller.
    what = type(e).__name__
    return KeyhavenError(
        f"{method} {path}: Keyhaven could not be reached ({what}) after {attempts} attempt(s)",
        status=None,
        code=code,
        method=method,
        path=path,
    )


def answer_error(
    response: httpx.Response, method: str, path: str, secrets: Tuple[str, ...]
) -> KeyhavenError:
    problem: Mapping[str, Any] = {}
    try:
        parsed = jsonlib.loads(response.content)
        if isinstance(parsed, dict):
            problem = parsed
    except ValueError:
        pass
    status = response.status_code
    code = str(problem.get("code") or f"http_{status}")
    title = problem.get("title")
    detail = problem.get("detail")
    title = redact(str(title), secrets) if title is not None else None
    detail = redact(str(detail), secrets) if detail is not None else None
    clean = {k: (redact(v, secrets) if isinstance(v, str) else v) for k, v in problem.items()}
    text = detail or title or response.reason_phrase or "error"
    return KeyhavenError(
        f"{method} {path}: {status} {code}: {text}",
        status=status,
        code=code,
        title=title,
        detail=detail,
        method=method,
        path=path,
        problem=clean,
    )


def decode(response: httpx.Response, method: str, path: str) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return jsonlib.loads(response.content)
    except ValueError:
        raise KeyhavenError(
            f"{method} {path}: {response.status_code} but the answer is not JSON",
            status=response.status_code,
            code="bad_answer",
            method=method,
            path=path,
        ) from None
