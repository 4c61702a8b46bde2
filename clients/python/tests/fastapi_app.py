"""The FastAPI app of the acceptance tests: the same routes protected through an
AsyncClient and through a sync Client, both cached."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Dict, Optional

from fastapi import Depends, FastAPI, Request

import keyhaven
from keyhaven.fastapi import install, require_key


def identity_json(caller: Optional[keyhaven.Identity]) -> Dict[str, Any]:
    if caller is None:
        return {"identity": None}
    return {
        "key_id": caller.key_id, "keyspace_id": caller.keyspace_id, "owner_id": caller.owner_id,
        "owner_external_id": caller.owner_external_id, "scopes": list(caller.scopes),
        "ratelimits": [r.remaining for r in caller.ratelimits], "remaining": caller.remaining,
    }


def build_app(url: str, root_key: str, dead_url: str) -> FastAPI:
    async_client = keyhaven.AsyncClient(url, root_key, cache=True)
    sync_client = keyhaven.Client(url, root_key, cache=True)
    dead = keyhaven.AsyncClient(dead_url, root_key, retries=0, timeout=1)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await async_client.aclose()
        await dead.aclose()
        sync_client.close()

    app = FastAPI(lifespan=lifespan)
    install(app)

    @app.get("/plain")
    async def plain() -> Dict[str, Any]:
        return {"ok": True}

    for name, client in (("async", async_client), ("sync", sync_client)):

        @app.get(f"/{name}/orders")
        async def orders(
            request: Request,
            caller: keyhaven.Identity = Depends(require_key(client, scopes=["orders:read"])),
        ) -> Dict[str, Any]:
            assert request.state.keyhaven is caller
            return identity_json(caller)

        @app.get(f"/{name}/any")
        async def any_key(caller: keyhaven.Identity = Depends(require_key(client))) -> Dict[str, Any]:
            return identity_json(caller)

    @app.get("/custom-header")
    async def custom(caller: keyhaven.Identity = Depends(require_key(async_client, key_header="X-Acme-Key"))) -> Dict[str, Any]:
        return identity_json(caller)

    @app.get("/down")
    async def down(caller: keyhaven.Identity = Depends(require_key(dead))) -> Dict[str, Any]:
        return identity_json(caller)

    @app.get("/down-open")
    async def down_open(caller: Optional[keyhaven.Identity] = Depends(require_key(dead, fail_open=True))) -> Dict[str, Any]:
        return identity_json(caller)

    return app
