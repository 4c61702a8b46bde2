"""Key utilities against docs/test-vectors.json (made by docs/test-vectors.py, an
independent implementation) and against the server's own display form."""

from __future__ import annotations

import json
import zlib
from typing import Any, Dict

import pytest

import keyhaven
from helpers import REPO, Server
from keyhaven.keys import ALPHABET, KeyFormatError, checksum, validate_prefix

VECTORS: Dict[str, Any] = json.loads((REPO / "docs" / "test-vectors.json").read_text())


@pytest.mark.parametrize("vector", VECTORS["keys"], ids=lambda v: v["key_id"])
def test_vectors_parse_into_their_parts(vector: Dict[str, Any]) -> None:
    key = vector["key"]
    parsed = keyhaven.parse_key(key)
    assert (parsed.prefix, parsed.key_id, parsed.secret, parsed.checksum) == (
        vector["prefix"], vector["key_id"], vector["secret"], vector["checksum"],
    )
    assert keyhaven.checksum_valid(key)
    assert keyhaven.key_id(key) == vector["key_id"]
    assert keyhaven.display(key) == f"{vector['prefix']}_{vector['key_id']}_\u2026{key[-4:]}"
    assert checksum(key[:-6]) == vector["checksum"]


@pytest.mark.parametrize("vector", VECTORS["malformed"], ids=lambda v: f"{v['check']}:{len(v['key'])}")
def test_malformed_vectors_fail_the_named_check(vector: Dict[str, Any]) -> None:
    key = vector["key"]
    with pytest.raises(KeyFormatError) as refused:
        keyhaven.parse_key(key)
    assert refused.value.check == vector["check"]
    assert not keyhaven.checksum_valid(key)
    if key:
        assert key not in str(refused.value)
        assert key not in repr(refused.value)


def test_checksum_is_crc32_as_six_base58_digits() -> None:
    # The standard CRC-32 check value: crc32(b"123456789") == 0xCBF43926.
    n = 0
    for ch in checksum("123456789"):
        n = n * 58 + ALPHABET.index(ch)
    assert n == zlib.crc32(b"123456789") == 0xCBF43926
    assert checksum("") == "111111"


def test_generated_keys_have_the_documented_shape() -> None:
    seen = set()
    for prefix in ("a", "acme_live", "abcdefghijklmnopqrst", "my_co_live_v2"):
        for _ in range(50):
            key = keyhaven.generate_key(prefix)
            parsed = keyhaven.parse_key(key)
            assert parsed.prefix == prefix
            assert len(parsed.key_id) == 12 and len(parsed.secret) == 30 and len(parsed.checksum) == 6
            assert all(c in ALPHABET for c in parsed.key_id + parsed.secret + parsed.checksum)
            seen.add(key)
    assert len(seen) == 200


def test_keys_with_256_bit_secrets_are_44_characters_of_secret_and_parse() -> None:
    for prefix in ("a", "acme_live", "abcdefghijklmnopqrst"):
        key = keyhaven.generate_key(prefix, secret_bytes=32)
        parsed = keyhaven.parse_key(key)
        assert parsed.prefix == prefix and len(parsed.secret) == 44
        assert len(key) == len(prefix) + 64
    with pytest.raises(ValueError):
        keyhaven.generate_key("a", secret_bytes=16)


def test_generated_characters_cover_the_alphabet() -> None:
    # 2,000 keys draw 84,000 characters: every one of the 58 appears (a generator using
    # `byte % 58` would still cover them, but a broken alphabet would not).
    counts = dict.fromkeys(ALPHABET, 0)
    for _ in range(2_000):
        parsed = keyhaven.parse_key(keyhaven.generate_key("x"))
        for ch in parsed.key_id + parsed.secret:
            counts[ch] += 1
    assert min(counts.values()) > 0.5 * (84_000 / 58)


@pytest.mark.parametrize(
    "prefix",
    ["", "Acme", "1acme", "_acme", "acme-live", "acme live", "a" * 21, "acmé"],
)
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(KeyFormatError) as refused:
        keyhaven.generate_key(prefix)
    assert refused.value.check == "prefix"
    with pytest.raises(KeyFormatError):
        validate_prefix(prefix)


def test_non_ascii_and_odd_inputs_are_refused_without_raising_elsewhere() -> None:
    good = VECTORS["keys"][0]["key"]
    for bad in (good[:-1] + "é", good[:10] + "\ud800" + good[11:], " " + good[1:], good.upper()):
        assert not keyhaven.checksum_valid(bad)
    assert not keyhaven.checksum_valid(None)  # type: ignore[arg-type]
    with pytest.raises(KeyFormatError):
        keyhaven.key_id(good[:-1] + "2" if good[-1] != "2" else good[:-1] + "3")


def test_parse_without_checksum_shows_a_mistyped_key() -> None:
    typo = next(v["key"] for v in VECTORS["malformed"] if v["check"] == "checksum")
    parsed = keyhaven.parse_key(typo, verify_checksum=False)
    assert parsed.key_id == keyhaven.parse_key(VECTORS["keys"][0]["key"]).key_id


def test_parsed_key_repr_hides_the_secret() -> None:
    vector = VECTORS["keys"][0]
    parsed = keyhaven.parse_key(vector["key"])
    assert vector["secret"] not in repr(parsed)
    assert vector["key"] not in repr(parsed)
    assert vector["key_id"] in repr(parsed)


def test_display_matches_the_servers_start(server: Server, admin: keyhaven.Client, keyspace: keyhaven.Keyspace) -> None:
    created = admin.create_key(keyspace["id"])
    assert keyhaven.display(created["key"]) == created["start"]
    assert keyhaven.key_id(created["key"]) == created["key_id"]
    assert keyhaven.parse_key(created["key"]).prefix == keyspace["prefix"]
