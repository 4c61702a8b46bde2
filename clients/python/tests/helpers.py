"""Helpers the tests share (fixtures are in conftest.py)."""

from __future__ import annotations

import secrets
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List

import httpx
import keyhaven
from keyhaven.models import RatelimitSpec

#: The repository root (clients/python/tests -> the checkout).
REPO = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Server:
    url: str
    root_key: str


def suffix(n: int = 10) -> str:
    return "".join(secrets.choice(string.ascii_lowercase) for _ in range(n))


def limit_one() -> List[RatelimitSpec]:
    return [{"name": "requests", "limit": 1, "duration_ms": 60_000}]


def wait_until(check: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def refused_within_a_second(get: Callable[[], httpx.Response]) -> httpx.Response:
    """The first answer of ``get`` that is not 200, asking again for up to a second (a
    cached client learns of a revocation through the change stream); the last answer
    if every one within the second was 200."""
    deadline = time.monotonic() + 1.0
    answer = get()
    while answer.status_code == 200 and time.monotonic() < deadline:
        time.sleep(0.005)
        answer = get()
    return answer


def percentiles(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"p50": at(0.50), "p99": at(0.99), "max": ordered[-1]}


def unknown_key(prefix: str) -> str:
    """A well-formed key (valid checksum) that the server never issued."""
    return keyhaven.generate_key(prefix)


def problem_of(response: Any) -> Dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: Dict[str, Any] = response.json()
    assert set(body) >= {"type", "title", "status", "code", "detail"}, body
    assert body["status"] == response.status_code
    assert body["type"] == f"urn:keyhaven:problem:{body['code']}"
    return body

