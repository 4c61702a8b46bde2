"""Benchmarks of the Python client (printed, never asserted), against a real server:

    scripts/with-server.sh clients/python/scripts/test.sh --bench
    # or, with the package installed in that python:
    scripts/with-server.sh python clients/python/bench/bench.py

1. Cached verify in-process, on one core (the process pinned to CPU 0): calls per second
   of ``Client.verify`` and ``AsyncClient.verify`` for a key the cache holds, plus the
   uncached round trip for comparison.
2. The FastAPI dependency's added latency: one app served by uvicorn (in its own
   process, pinned to CPU 1) with the same handler behind ``require_key`` (cached) and
   without it, requests alternating between the two in the same run; and the same two
   routes called in-process through ASGI, without the network.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List

import httpx

import keyhaven


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def build_app(url: str, root_key: str) -> Any:
    from fastapi import Depends, FastAPI

    from keyhaven.fastapi import install, require_key

    client = keyhaven.AsyncClient(url, root_key, cache=True)
    app = FastAPI()
    install(app)

    @app.get("/plain")
    async def plain() -> Dict[str, Any]:
        return {"ok": True}

    @app.get("/protected")
    async def protected(caller: keyhaven.Identity = Depends(require_key(client, scopes=["orders:read"]))) -> Dict[str, Any]:
        return {"ok": True}

    return app


def serve(port: int, url: str, root_key: str) -> None:
    """The uvicorn process of part 2."""
    import uvicorn

    pin(1)
    uvicorn.run(build_app(url, root_key), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def wait_cached(verify: Callable[[], keyhaven.VerifyResult]) -> None:
    deadline = time.monotonic() + 10
    while not verify().cached:
        if time.monotonic() > deadline:
            raise SystemExit("the key never became cached: is the change stream reachable?")
        time.sleep(0.005)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s ({seconds / n * 1e6:.2f} µs per call)"


def bench_verify(url: str, root_key: str, key: str) -> None:
    print("== cached verify, in-process, one core (CPU 0)")
    with keyhaven.Client(url, root_key, cache=True) as client:
        wait_cached(lambda: client.verify(key))
        for label, scopes in (("no scopes", None), ("scopes=['orders:read']", ["orders:read"])):
            n = 300_000
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(n):
                    client.verify(key, scopes)
                best = min(best, time.perf_counter() - start)
            print(f"  Client.verify ({label}): {rate(n, best)}")

    async def run_async() -> None:
        async with keyhaven.AsyncClient(url, root_key, cache=True) as client:
            deadline = time.monotonic() + 10
            while not (await client.verify(key)).cached:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.005)
            n = 300_000
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                for _ in range(n):
                    await client.verify(key)
                best = min(best, time.perf_counter() - start)
            print(f"  AsyncClient.verify (no scopes): {rate(n, best)}")

    asyncio.run(run_async())

    with keyhaven.Client(url, root_key) as uncached:
        n = 2_000
        start = time.perf_counter()
        for _ in range(n):
            uncached.verify(key)
        print(f"  uncached Client.verify (a round trip to the server each): {rate(n, time.perf_counter() - start)}")


def bench_fastapi(url: str, root_key: str, key: str) -> None:
    print("== FastAPI: the same route with and without require_key (cached)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), url, root_key],
        stdin=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base}/plain", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the uvicorn process did not start")
                time.sleep(0.05)
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, timeout=10) as http:
            for _ in range(1_000):  # warm up; the server's cache fills once its stream vouches
                assert http.get("/protected", headers=headers).status_code == 200
                http.get("/plain", headers=headers)
            times: Dict[str, List[float]] = {"/plain": [], "/protected": []}
            for _ in range(4_000):
                for path in ("/plain", "/protected"):
                    start = time.perf_counter()
                    response = http.get(path, headers=headers)
                    times[path].append(time.perf_counter() - start)
                    assert response.status_code == 200
        p50 = {p: statistics.median(t) * 1e6 for p, t in times.items()}
        mean = {p: statistics.fmean(t) * 1e6 for p, t in times.items()}
        print("  over HTTP (uvicorn on CPU 1, httpx client on CPU 0, keep-alive, 4,000 requests each):")
        for path in times:
            print(f"    {path:11} p50 {p50[path]:7.1f} µs   mean {mean[path]:7.1f} µs")
        print(f"    added by require_key: p50 {p50['/protected'] - p50['/plain']:+.1f} µs, "
              f"mean {mean['/protected'] - mean['/plain']:+.1f} µs")
    finally:
        server.terminate()
        server.wait(timeout=10)

    asyncio.run(bench_asgi(url, root_key, key))


async def bench_asgi(url: str, root_key: str, key: str) -> None:
    app = build_app(url, root_key)
    auth = f"Bearer {key}".encode()

    async def call(path: str) -> int:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": [(b"host", b"bench"), (b"authorization", auth)],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 80),
        }
        status = 0

        async def receive() -> Dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        await app(scope, receive, send)
        return status

    deadline = time.monotonic() + 10
    while True:  # until the dependency answers from the cache
        assert await call("/protected") == 200
        start = time.perf_counter()
        for _ in range(50):
            await call("/protected")
        if (time.perf_counter() - start) / 50 < 0.0005 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)

    async def timed(path: str, n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            await call(path)
        return (time.perf_counter() - start) / n * 1e6

    n = 20_000
    results: Dict[str, float] = {"/plain": float("inf"), "/protected": float("inf")}
    for _ in range(3):
        for path in results:
            results[path] = min(results[path], await timed(path, n))
    print(f"  in-process ASGI calls (no network, {n:,} each, best of 3):")
    for path, us in results.items():
        print(f"    {path:11} {us:7.1f} µs per request")
    print(f"    added by require_key: {results['/protected'] - results['/plain']:+.1f} µs")


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--serve":
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        return
    url, root_key = os.environ.get("KEYHAVEN_URL"), os.environ.get("KEYHAVEN_ROOT_KEY")
    if not url or not root_key:
        raise SystemExit("KEYHAVEN_URL and KEYHAVEN_ROOT_KEY are not set: run under scripts/with-server.sh")
    pin(0)
    with keyhaven.Client(url, root_key) as admin:
        tag = "".join(chr(97 + (b % 26)) for b in os.urandom(8))
        keyspace = admin.create_keyspace(f"bench {tag}", f"bench_{tag}")
        key = admin.create_key(keyspace["id"], scopes=["orders:*"])["key"]
    print(f"keyhaven-python {keyhaven.__version__}, Python {sys.version.split()[0]}, httpx {httpx.__version__}")
    bench_verify(url, root_key, key)
    bench_fastapi(url, root_key, key)


if __name__ == "__main__":
    main()
