"""The API's calls as data (method, path, query, body), built once for both clients."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Mapping, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import quote

#: A named limit for :meth:`keyhaven.Client.verify`: its name, or ``{"name", "cost"}``.
NamedLimit = Union[str, Mapping[str, Any]]


class Call(NamedTuple):
    method: str
    path: str
    params: Optional[Dict[str, str]] = None
    json: Any = None
    #: A JSON body holding a key (``repr`` shows ``<redacted>``).
    secret: Any = None


def seg(value: str) -> str:
    """One path segment, escaped (ids are plain, but a caller's string may not be)."""
    if not isinstance(value, str) or not value:
        raise ValueError("an id must be a non-empty str")
    return quote(value, safe="")


def params(**values: Any) -> Optional[Dict[str, str]]:
    out: Dict[str, str] = {}
    for name, value in values.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[name] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            out[name] = ",".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out or None


def body(**fields: Any) -> Dict[str, Any]:
    """A JSON body without the fields left at ``None`` (not given)."""
    return {k: v for k, v in fields.items() if v is not None}


def scope_tuple(scopes: Union[str, Iterable[str], None]) -> Tuple[str, ...]:
    if scopes is None:
        return ()
    if isinstance(scopes, str):
        return (scopes,)
    return tuple(scopes)


def verify_body(
    key: str,
    scopes: Tuple[str, ...],
    cost: Optional[int],
    ratelimits: Optional[Sequence[NamedLimit]],
    client_ip: Optional[str],
    permissions: Optional[str] = None,
    audience: Optional[str] = None,
) -> Dict[str, Any]:
    out: Dict[str, Any] = {"key": key}
    if scopes:
        out["scopes"] = list(scopes)
    if cost is not None:
        out["cost"] = cost
    if ratelimits is not None:
        out["ratelimits"] = [
            {"name": r} if isinstance(r, str) else dict(r) for r in ratelimits
        ]
    if client_ip is not None:
        out["client_ip"] = client_ip
    if permissions is not None:
        out["permissions"] = permissions
    if audience is not None:
        out["audience"] = audience
    return out
