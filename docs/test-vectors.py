#!/usr/bin/env python3
"""Keyhaven key-format test vectors: an independent implementation in Python.

    python3 docs/test-vectors.py           # check docs/test-vectors.json
    python3 docs/test-vectors.py --write   # regenerate it (only when the format changes)

Uses only the standard library (zlib for CRC-32, hmac/hashlib for the verifier), so the
Rust code and this script agreeing on the vectors means two implementations agree.
"""
import hashlib
import hmac
import json
import pathlib
import sys
import zlib

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
PATH = pathlib.Path(__file__).with_name("test-vectors.json")


def checksum(body: str) -> str:
    n = zlib.crc32(body.encode("utf-8"))
    out = ""
    for _ in range(6):
        n, r = divmod(n, 58)
        out = ALPHABET[r] + out
    assert n == 0
    return out


def verifier(pepper: bytes, key_id: str, secret: str) -> str:
    return hmac.new(pepper, f"{key_id}:{secret}".encode(), hashlib.sha256).hexdigest()


def make_key(prefix: str, key_id: str, secret: str, pepper_hex: str, version: int) -> dict:
    assert len(key_id) == 12 and len(secret) in (30, 44)
    body = f"{prefix}_{key_id}_{secret}"
    key = body + checksum(body)
    return {
        "key": key,
        "prefix": prefix,
        "key_id": key_id,
        "secret": secret,
        "checksum": key[-6:],
        "pepper_version": version,
        "pepper_hex": pepper_hex,
        "verifier_hex": verifier(bytes.fromhex(pepper_hex), key_id, secret),
    }


def build() -> dict:
    pepper1 = bytes(range(32)).hex()
    pepper2 = hashlib.sha256(b"keyhaven test pepper 2").hexdigest()
    keys = [
        make_key("acme_live", "7Gx9QbWkP2mZ", "4fT8cK9aB3cQWERTYUPASDFGHJKLZX", pepper1, 1),
        make_key("a", "111111111111", "111111111111111111111111111111", pepper1, 1),
        make_key("abcdefghijklmnopqrst", "zzzzzzzzzzzz", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz", pepper1, 1),
        make_key("my_co_live_v2", "HjKmNpQrStUv", "wxyz23456789ABCDEFGHJKLMNPQRST", pepper2, 2),
        # Long (256-bit) secrets: 44 characters.
        make_key("acme_live", "7Gx9QbWkP2mZ", "4fT8cK9aB3cQWERTYUPASDFGHJKLZXwxyz23456789AB", pepper1, 1),
        make_key("abcdefghijklmnopqrst", "zzzzzzzzzzzz", "z" * 44, pepper1, 1),
    ]
    good = keys[0]["key"]
    typo = good[:30] + ("b" if good[30] != "b" else "c") + good[31:]
    swapped = good[:40] + good[41] + good[40] + good[42:]
    malformed = [
        {"key": "", "check": "length"},
        {"key": keys[1]["key"][:-1], "check": "length"},
        {"key": keys[5]["key"] + "1", "check": "length"},
        # 71 characters: between the layouts, read as a long secret, whose '_' is missing.
        {"key": keys[2]["key"] + "1", "check": "separator"},
        {"key": keys[4]["key"][:-1], "check": "separator"},
        {"key": good[:-1], "check": "separator"},
        {"key": good + "1", "check": "separator"},
        {"key": good[:20] + "0" + good[21:], "check": "character"},
        {"key": good[:20] + "-" + good[21:], "check": "character"},
        {"key": good[:9] + "-" + good[10:], "check": "character"},
        {"key": "ACME_LIVE" + good[9:], "check": "prefix"},
        {"key": typo, "check": "checksum"},
    ]
    if swapped != good:
        malformed.append({"key": swapped, "check": "checksum"})
    return {
        "description": (
            "Keyhaven key format test vectors. key = prefix '_' key_id '_' secret checksum "
            "(secret: 30 base58 characters, or 44 for 256-bit secrets); "
            "checksum = CRC-32/IEEE of everything before it as 6 base58 digits (Bitcoin "
            "alphabet, big-endian, left-padded with '1'); verifier = "
            "HMAC-SHA256(pepper, key_id ':' secret). Generated and checked by "
            "docs/test-vectors.py; reproduced by crates/core/tests/test_vectors.rs."
        ),
        "keys": keys,
        "malformed": malformed,
        "compat": [
            {
                "format": "prefix_shortToken_longToken",
                "key": "myapp_BRTRKFsL_51FwqftsmMDHHbJAMEXXHCgG",
                "stored_sha256_hex": "d70d981d87b449c107327c2a2afbf00d4b58070d6ba571aac35d7ea3e7c79f37",
            }
        ],
    }


def check(doc: dict) -> int:
    failures = 0
    for k in doc["keys"]:
        again = make_key(k["prefix"], k["key_id"], k["secret"], k["pepper_hex"], k["pepper_version"])
        if again != k:
            print(f"MISMATCH key vector {k['key_id']}")
            failures += 1
    for c in doc["compat"]:
        long_token = c["key"].rsplit("_", 2)[2]
        if hashlib.sha256(long_token.encode()).hexdigest() != c["stored_sha256_hex"]:
            print(f"MISMATCH compat vector {c['key']}")
            failures += 1
    for m in doc["malformed"]:
        k = m["key"]
        body, given = k[:-6], k[-6:]
        if 51 <= len(k) <= 84 and checksum(body) == given and m["check"] == "checksum":
            print(f"malformed vector passes its checksum: {m}")
            failures += 1
    total = len(doc["keys"]) + len(doc["compat"]) + len(doc["malformed"])
    print(f"test-vectors: {total - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    if "--write" in sys.argv:
        PATH.write_text(json.dumps(build(), indent=2) + "\n")
        print(f"wrote {PATH}")
        sys.exit(0)
    doc = json.loads(PATH.read_text())
    if doc != build():
        print("docs/test-vectors.json differs from what this script generates")
        sys.exit(1)
    sys.exit(check(doc))
