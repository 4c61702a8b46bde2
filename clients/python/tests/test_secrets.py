"""No key and no root key in any error message, repr, traceback (also the locals of the
client's own frames, as error trackers capture them) or log line."""

from __future__ import annotations

import logging
import socket
import traceback
from pathlib import Path
from typing import Iterator, List

import httpx
import pytest

import keyhaven
from helpers import Server, unknown_key

PACKAGE_DIR = str(Path(keyhaven.__file__).parent)


def texts_of(error: BaseException) -> List[str]:
    """Everything a person or a tool could see of an error."""
    out = [str(error), repr(error), "".join(traceback.format_exception(type(error), error, error.__traceback__))]
    for frame, _ in traceback.walk_tb(error.__traceback__):
        if frame.f_code.co_filename.startswith(PACKAGE_DIR):
            out.extend(repr(v) for v in frame.f_locals.values())
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None:
        out.extend(texts_of(cause))
    return out


def assert_hidden(error: BaseException, *secrets: str) -> None:
    for text in texts_of(error):
        for secret in secrets:
            assert secret not in text, f"a secret appears in: {text[:200]}"


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # every logger, httpx and httpcore included
    yield caplog


def assert_logs_hidden(caplog: pytest.LogCaptureFixture, *secrets: str) -> None:
    assert caplog.records, "expected some log records (httpx logs every request)"
    for record in caplog.records:
        line = record.getMessage() + repr(record.args)
        for secret in secrets:
            assert secret not in line, line


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_refused_root_key_is_not_in_the_error(server: Server, keyspace: keyhaven.Keyspace, all_logs: pytest.LogCaptureFixture) -> None:
    root = "kh_root_" + "Z" * 60
    key = unknown_key(keyspace["prefix"])
    with keyhaven.Client(server.url, root, cache=True) as client:
        with pytest.raises(keyhaven.KeyhavenError) as refused:
            client.verify(key)
        assert refused.value.status == 401
        assert_hidden(refused.value, root, key)
        assert root not in repr(client) and root not in str(vars(client))
    assert_logs_hidden(all_logs, root, key)


def test_unreachable_server_error_holds_no_secret(all_logs: pytest.LogCaptureFixture) -> None:
    root = "kh_root_" + "Y" * 60
    key = keyhaven.generate_key("acme_live")
    client = keyhaven.Client(f"http://127.0.0.1:{dead_port()}", root, retries=1, timeout=1, cache=True)
    with pytest.raises(keyhaven.KeyhavenError) as failed:
        client.verify(key, scopes=["a"], client_ip="127.0.0.1")
    assert failed.value.unavailable
    assert_hidden(failed.value, root, key)
    for call in (lambda: client.create_key("ks"), lambda: client.get_key("abc")):
        with pytest.raises(keyhaven.KeyhavenError) as other:
            call()
        assert_hidden(other.value, root)
    client.close()
    assert_logs_hidden(all_logs, root, key)


def test_an_answer_echoing_a_secret_is_redacted() -> None:
    root = "kh_root_" + "X" * 60
    key = keyhaven.generate_key("acme_live")

    def echo(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={
            "type": "urn:keyhaven:problem:invalid_request", "title": f"bad {key}", "status": 400,
            "code": "invalid_request", "detail": f"the key {key} with {request.headers['authorization']}",
        })

    client = keyhaven.Client("http://keyhaven.invalid", root, transport=httpx.MockTransport(echo))
    with pytest.raises(keyhaven.KeyhavenError) as refused:
        client.verify(key)
    assert "<redacted>" in str(refused.value)
    assert_hidden(refused.value, root, key)
    for value in refused.value.problem.values():
        assert key not in str(value) and root not in str(value)


async def test_async_errors_hold_no_secret(all_logs: pytest.LogCaptureFixture) -> None:
    root = "kh_root_" + "W" * 60
    key = keyhaven.generate_key("acme_live")
    async with keyhaven.AsyncClient(f"http://127.0.0.1:{dead_port()}", root, retries=1, cache=True) as client:
        with pytest.raises(keyhaven.KeyhavenError) as failed:
            await client.verify(key)
        assert_hidden(failed.value, root, key)
        assert root not in repr(client)
    assert_logs_hidden(all_logs, root, key)


def test_results_and_identities_hold_no_key(admin: keyhaven.Client, keyspace: keyhaven.Keyspace) -> None:
    created = admin.create_key(keyspace["id"])
    result = admin.verify(created["key"])
    identity = keyhaven.Identity.of(result)
    for text in (repr(result), str(result), repr(identity)):
        assert created["key"] not in text
        assert keyhaven.parse_key(created["key"]).secret not in text
