"""The one error type of the client."""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["KeyhavenError"]


class KeyhavenError(Exception):
    """A call to Keyhaven that did not succeed.

    - ``status``: the HTTP status of Keyhaven's answer, or ``None`` when no answer came
      (connection refused or reset, timeout: after the retries);
    - ``code``: the problem's stable ``code`` (``not_found``, ``missing_scope``,
      ``invalid_request``, ...), or ``unavailable`` / ``timeout`` without an answer;
    - ``title``, ``detail``: the problem's text; ``method`` and ``path``: the call.

    Neither the message nor ``repr`` ever holds a key or the root key: requests carry
    them only in headers and bodies, which are never quoted, and any echo of them in an
    answer's text is cut out.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "unavailable",
        title: str | None = None,
        detail: str | None = None,
        method: str | None = None,
        path: str | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.method = method
        self.path = path
        self.problem: Mapping[str, Any] = problem or {}

    @property
    def unavailable(self) -> bool:
        """True when Keyhaven gave no usable answer (no answer at all, or a 5xx)."""
        return self.status is None or self.status >= 500

    def __repr__(self) -> str:
        return f"KeyhavenError(status={self.status!r}, code={self.code!r}, message={str(self)!r})"
