"""Following ``GET /v1/changes`` (server-sent events) to keep a :class:`VerifyCache`
coherent: a daemon thread for :class:`keyhaven.Client`, an asyncio task for
:class:`keyhaven.AsyncClient`.

Each connection resumes from the last event id (``Last-Event-ID``); a broken or refused
stream is retried with a backoff doubling from 100 ms to 2 s; a stream that sends no byte
for twice ``coherence_ms`` (eight missed heartbeats: a half-open connection) is dropped
and reconnected. Meanwhile the cache is not served once the stream has been silent for
half of ``coherence_ms`` (the cache checks that itself).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from typing import Dict, List, Optional, Tuple

import httpx

from .cache import VerifyCache

log = logging.getLogger("keyhaven")

_FIRST_BACKOFF = 0.1
_MAX_BACKOFF = 2.0


class SseParser:
    """Turns the stream's lines into ``(event, data, id)`` triples (the WHATWG
    server-sent events rules that matter here: ``field: value`` lines, ``:`` comments,
    several ``data`` lines joined by newlines, a blank line ends an event)."""

    def __init__(self) -> None:
        self._event = ""
        self._data: List[str] = []
        self._id: Optional[str] = None

    def feed(self, line: str) -> Optional[Tuple[str, str, Optional[str]]]:
        if line == "":
            if not self._data and not self._event and self._id is None:
                return None
            out = (self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._id = "", [], None
            return out
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\x00" not in value:
            self._id = value
        return None


def apply_event(cache: VerifyCache, event: str, data: str) -> None:
    """What one event does to the cache."""
    if event == "key":
        key_id = None
        try:
            parsed = json.loads(data)
            if isinstance(parsed, dict) and isinstance(parsed.get("key_id"), str):
                key_id = parsed["key_id"]
        except ValueError:
            pass
        if key_id is not None:
            cache.invalidate_key(key_id)
        else:
            cache.invalidate_all()
    elif event == "heartbeat":
        pass
    else:
        # `all`, `reset`, and any event this client does not know.
        cache.invalidate_all()
    # Only a heartbeat, or a reset (which the server sends once it can vouch again),
    # says "everything up to here was sent".
    if event in ("heartbeat", "reset"):
        cache.heard()


class _Follow:
    """What both followers share: the cursor, the backoff, and quiet logging."""

    def __init__(self, cache: VerifyCache) -> None:
        self.cache = cache
        self.cursor: Optional[str] = None
        self.backoff = _FIRST_BACKOFF
        self._last_problem: Optional[str] = None

    def headers(self) -> Dict[str, str]:
        headers = {"accept": "text/event-stream"}
        if self.cursor is not None:
            headers["last-event-id"] = self.cursor
        return headers

    def timeout(self, connect: float) -> httpx.Timeout:
        silence = 2 * self.cache.options.coherence_ms / 1000.0
        return httpx.Timeout(connect, read=silence)

    def line(self, parser: SseParser, line: str) -> None:
        event = parser.feed(line)
        if event is None:
            return
        kind, data, event_id = event
        apply_event(self.cache, kind, data)
        if event_id is not None:
            self.cursor = event_id
        self.backoff = _FIRST_BACKOFF
        if self._last_problem is not None:
            log.info("keyhaven: following the change stream again")
            self._last_problem = None

    def problem(self, what: str) -> float:
        """Logs why the stream broke (once per kind of failure) and gives the wait."""
        if what != self._last_problem:
            log.warning("keyhaven: change stream lost (%s); reconnecting", what)
            self._last_problem = what
        wait = self.backoff
        self.backoff = min(self.backoff * 2, _MAX_BACKOFF)
        return wait


def _describe(e: BaseException) -> str:
    # httpx's messages name the error, never a header or body.
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class ThreadFollower:
    """The stream, followed by a daemon thread."""

    def __init__(self, url: str, auth: str, cache: VerifyCache, connect_timeout: float,
                 transport: Optional[httpx.BaseTransport] = None) -> None:
        self._url = url
        self._follow = _Follow(cache)
        self._stop = threading.Event()
        self._http = httpx.Client(
            transport=transport, timeout=self._follow.timeout(connect_timeout), headers={"authorization": auth}
        )
        self._thread = threading.Thread(target=self._run, name="keyhaven-changes", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def done(self) -> bool:
        """Whether the thread has ended (stopped, or lost: a forked child has no copy
        of its parent's threads), so that a new one should follow the stream."""
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._http.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.5)

    def _run(self) -> None:
        follow = self._follow
        while not self._stop.is_set():
            try:
                with self._http.stream("GET", self._url, headers=follow.headers()) as r:
                    if r.status_code != 200:
                        raise _Refused(r.status_code)
                    parser = SseParser()
                    for line in r.iter_lines():
                        if self._stop.is_set():
                            return
                        follow.line(parser, line)
                problem = "the stream ended"
            except _Refused as e:
                problem = f"answered {e.status}"
            except Exception as e:  # noqa: BLE001 - a follower must never die
                if self._stop.is_set():
                    return
                problem = _describe(e)
            self._stop.wait(follow.problem(problem))


class TaskFollower:
    """The stream, followed by an asyncio task on the loop that started it."""

    def __init__(self, url: str, auth: str, cache: VerifyCache, connect_timeout: float,
                 transport: Optional[httpx.AsyncBaseTransport] = None) -> None:
        self._url = url
        self._follow = _Follow(cache)
        self._http = httpx.AsyncClient(
            transport=transport, timeout=self._follow.timeout(connect_timeout), headers={"authorization": auth}
        )
        self._task: Optional[asyncio.Task[None]] = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="keyhaven-changes")

    def done(self) -> bool:
        """Whether the task has ended (its event loop closed, or it was cancelled)."""
        return self._task is None or self._task.done()

    async def stop(self) -> None:
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception:  # noqa: BLE001
                pass
        await self._http.aclose()

    async def _run(self) -> None:
        follow = self._follow
        while True:
            try:
                async with self._http.stream("GET", self._url, headers=follow.headers()) as r:
                    if r.status_code != 200:
                        raise _Refused(r.status_code)
                    parser = SseParser()
                    async for line in r.aiter_lines():
                        follow.line(parser, line)
                problem = "the stream ended"
            except _Refused as e:
                problem = f"answered {e.status}"
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - a follower must never die
                problem = _describe(e)
            await asyncio.sleep(follow.problem(problem))


class _Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"answered {status}")
        self.status = status
