"""Fixtures: the real Keyhaven server started by ``scripts/with-server.sh`` (its URL and
root key in the environment), an admin client, and fresh keyspaces with their own
random prefixes so tests never collide."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Tuple

import pytest

import keyhaven
from helpers import Server, suffix


@pytest.fixture(scope="session")
def server() -> Server:
    url = os.environ.get("KEYHAVEN_URL")
    root_key = os.environ.get("KEYHAVEN_ROOT_KEY")
    if not url or not root_key:
        message = (
            "KEYHAVEN_URL and KEYHAVEN_ROOT_KEY are not set: run the suite under "
            "scripts/with-server.sh (clients/python/scripts/test.sh does)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return Server(url, root_key)


@pytest.fixture(scope="session")
def admin(server: Server) -> Iterator[keyhaven.Client]:
    client = keyhaven.Client(server.url, server.root_key)
    yield client
    client.close()


@pytest.fixture
def keyspace(admin: keyhaven.Client) -> keyhaven.Keyspace:
    tag = suffix()
    return admin.create_keyspace(f"python tests {tag}", f"py_{tag}")


KeyMaker = Callable[..., Tuple[str, str]]


@pytest.fixture
def make_key(admin: keyhaven.Client, keyspace: keyhaven.Keyspace) -> KeyMaker:
    """``make_key(scopes=[...], ratelimits=[...])`` -> ``(key, key_id)`` in a fresh keyspace."""

    def make(**fields: Any) -> Tuple[str, str]:
        created = admin.create_key(keyspace["id"], **fields)
        return created["key"], created["key_id"]

    return make


