"""A stand-in for Keyhaven in front of the real server: it serves its own
``GET /v1/changes`` (heartbeats, silence or a closed stream, as a test says) and passes
every other call through to the real server. With it a test can silence the stream
while the server itself goes on (revocations included)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional

import httpx


class FakeStream:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.mode = "beat"  # "beat", "silent", or "close" (one event, then close)
        self.last_event_ids: List[Optional[str]] = []
        self._stop = threading.Event()
        self._http = httpx.Client(timeout=10)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                if self.path.startswith("/v1/changes"):
                    fake._changes(self)
                else:
                    fake._forward(self, "GET")

            def do_POST(self) -> None:
                fake._forward(self, "POST")

            def do_PATCH(self) -> None:
                fake._forward(self, "PATCH")

            def do_DELETE(self) -> None:
                fake._forward(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self.last_event_ids)

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        headers = {k: v for k, v in handler.headers.items() if k.lower() in ("authorization", "content-type", "idempotency-key")}
        answer = self._http.request(method, self.upstream + handler.path, content=body, headers=headers)
        handler.send_response(answer.status_code)
        handler.send_header("content-type", answer.headers.get("content-type", "application/json"))
        handler.send_header("content-length", str(len(answer.content)))
        handler.end_headers()
        handler.wfile.write(answer.content)

    def _changes(self, handler: BaseHTTPRequestHandler) -> None:
        self.last_event_ids.append(handler.headers.get("last-event-id"))
        handler.send_response(200)
        handler.send_header("content-type", "text/event-stream")
        handler.end_headers()
        n = 0
        try:
            while not self._stop.is_set():
                if self.mode == "beat":
                    n += 1
                    handler.wfile.write(f"id: fake-{n}\nevent: heartbeat\ndata: {{}}\n\n".encode())
                    handler.wfile.flush()
                elif self.mode == "close":
                    handler.wfile.write(b"id: fake-close-7\nevent: heartbeat\ndata: {}\n\n")
                    handler.wfile.flush()
                    return
                time.sleep(0.05)
        except OSError:
            return

    def close(self) -> None:
        self._stop.set()
        self._server.shutdown()
        self._server.server_close()
        self._http.close()
