import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { inspect } from "node:util";

import {
  ALPHABET,
  checksumValid,
  display,
  generateKey,
  KeyFormatError,
  keyId,
  parseKey,
  prefixValid,
} from "../dist/index.js";

// The repository's vectors, shared with the server (crates/core) and docs/test-vectors.py.
const vectors = JSON.parse(
  readFileSync(new URL("../../../docs/test-vectors.json", import.meta.url), "utf8"),
);

test("every key vector parses into its parts", () => {
  assert.ok(vectors.keys.length >= 4);
  for (const v of vectors.keys) {
    const parsed = parseKey(v.key);
    assert.equal(parsed.prefix, v.prefix);
    assert.equal(parsed.keyId, v.key_id);
    assert.equal(parsed.secret, v.secret);
    assert.equal(parsed.checksum, v.checksum);
    assert.ok(checksumValid(v.key));
    assert.equal(keyId(v.key), v.key_id);
    assert.equal(display(v.key), `${v.prefix}_${v.key_id}_\u2026${v.checksum.slice(2)}`);
  }
});

test("every malformed vector is refused by the check it names", () => {
  assert.ok(vectors.malformed.length >= 10);
  for (const m of vectors.malformed) {
    assert.throws(
      () => parseKey(m.key),
      (e) => e instanceof KeyFormatError && e.check === m.check,
      `${JSON.stringify(m.key)} should fail ${m.check}`,
    );
    assert.equal(checksumValid(m.key), false);
    assert.equal(keyId(m.key), null);
    assert.equal(display(m.key), null);
  }
});

test("the display form is the server's (acme_live_7Gx9QbWkP2mZ_…SQf without its first two checksum characters)", () => {
  assert.equal(
    display("acme_live_7Gx9QbWkP2mZ_4fT8cK9aB3cQWERTYUPASDFGHJKLZX3DRSQf"),
    "acme_live_7Gx9QbWkP2mZ_\u2026RSQf",
  );
});

test("generated keys are well-formed, under their prefix, and never repeat", () => {
  const seen = new Set();
  for (const prefix of ["a", "acme_live", "abcdefghijklmnopqrst", "my_co_live_v2"]) {
    for (let i = 0; i < 200; i++) {
      const key = generateKey(prefix);
      const p = parseKey(key);
      assert.equal(p.prefix, prefix);
      assert.equal(p.keyId.length, 12);
      assert.equal(p.secret.length, 30);
      assert.equal(p.checksum.length, 6);
      assert.equal(key.length, prefix.length + 50);
      assert.match(key.slice(prefix.length + 1), new RegExp(`^[${ALPHABET}]{12}_[${ALPHABET}]{36}$`));
      assert.ok(!seen.has(key));
      seen.add(key);
    }
  }
});

test("keys with 256-bit secrets (secretBytes 32) are 44 characters of secret and parse", () => {
  for (const prefix of ["a", "acme_live", "abcdefghijklmnopqrst"]) {
    const key = generateKey(prefix, { secretBytes: 32 });
    const p = parseKey(key);
    assert.equal(p.prefix, prefix);
    assert.equal(p.secret.length, 44);
    assert.equal(key.length, prefix.length + 64);
  }
  assert.throws(() => generateKey("a", { secretBytes: 16 }), RangeError);
});

test("generated secrets use the whole alphabet, roughly uniformly", () => {
  const counts = new Map();
  const n = 2000;
  for (let i = 0; i < n; i++) {
    for (const c of parseKey(generateKey("u")).secret) counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  assert.equal(counts.size, 58);
  const expected = (n * 30) / 58;
  for (const [c, count] of counts) {
    assert.ok(Math.abs(count - expected) < expected * 0.2, `${c}: ${count} vs ${expected}`);
  }
});

test("prefixes are checked as the server checks them", () => {
  for (const good of ["a", "acme_live", "a1_", "abcdefghijklmnopqrst"]) {
    assert.ok(prefixValid(good), good);
  }
  for (const bad of ["", "1abc", "_a", "Acme", "acme-live", "abcdefghijklmnopqrstu", "é"]) {
    assert.equal(prefixValid(bad), false, bad);
    assert.throws(() => generateKey(bad), (e) => e instanceof KeyFormatError && e.check === "prefix");
  }
});

test("a single changed character fails the checksum", () => {
  const key = generateKey("acme_live");
  const at = key.length - 10;
  const other = key[at] === "a" ? "b" : "a";
  const typo = key.slice(0, at) + other + key.slice(at + 1);
  assert.throws(() => parseKey(typo), (e) => e.check === "checksum");
});

test("neither a parsed key nor a refusal shows the secret", () => {
  const key = generateKey("acme_live");
  const parsed = parseKey(key);
  assert.ok(!inspect(parsed).includes(parsed.secret));
  assert.ok(!JSON.stringify(parsed).includes(parsed.secret));
  const broken = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
  try {
    parseKey(broken);
    assert.fail("accepted a broken key");
  } catch (e) {
    for (const text of [e.message, e.stack, inspect(e), JSON.stringify(e)]) {
      assert.ok(!text.includes(parsed.secret) && !text.includes(key.slice(0, 20)));
    }
  }
});
