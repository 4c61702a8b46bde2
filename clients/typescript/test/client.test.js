// The client against a real Keyhaven (scripts/with-server.sh).
import assert from "node:assert/strict";
import { test } from "node:test";
import { inspect } from "node:util";

import { display, Keyhaven, KeyhavenError } from "../dist/index.js";
import { admin, freshKeyspace, needsServer, rootKey, sleep, url } from "./helpers.js";

const opts = { skip: needsServer };

test("keyspaces, owners and keys: create, get, list, update, revoke, rotate, delete", opts, async () => {
  const kh = admin();
  const ks = await freshKeyspace(kh, "adm");
  assert.match(ks.id, /^ks_/);
  assert.deepEqual(await kh.keyspaces.get(ks.id), ks);
  assert.deepEqual(await kh.request("GET", `/v1/keyspaces/${ks.id}`), ks);
  let found = false;
  for (let cursor; !found; ) {
    const page = await kh.keyspaces.list({ limit: 100, cursor });
    found = page.data.some((k) => k.id === ks.id);
    if (page.next_cursor === null) break;
    cursor = page.next_cursor;
  }
  assert.ok(found, "the keyspace is listed");

  const externalId = `cust-${ks.prefix}`;
  const owner = await kh.owners.create({ external_id: externalId, name: "Customer" });
  assert.equal((await kh.owners.get(owner.id)).external_id, externalId);
  assert.deepEqual((await kh.owners.list({ external_id: externalId })).data.map((o) => o.id), [owner.id]);

  const created = await kh.keys.create({
    keyspace_id: ks.id,
    owner_id: owner.id,
    name: "first",
    scopes: ["orders:read", "billing:*"],
    meta: { plan: "pro" },
  });
  assert.ok(created.key.startsWith(`${ks.prefix}_`));
  assert.equal(created.start, display(created.key), "display() is the server's start");
  const got = await kh.keys.get(created.key_id);
  assert.equal(got.key, undefined, "the plaintext is shown once");
  assert.equal(got.name, "first");
  assert.deepEqual((await kh.keys.list({ keyspace_id: ks.id })).data.map((k) => k.key_id), [created.key_id]);

  const answer = await kh.verify({ key: created.key, scopes: ["billing:charge"] });
  assert.equal(answer.valid, true);
  assert.equal(answer.code, "VALID");
  assert.equal(answer.keyId, created.key_id);
  assert.equal(answer.keyspaceId, ks.id);
  assert.equal(answer.keyspace, ks.name);
  assert.deepEqual(answer.owner, { id: owner.id, externalId });
  assert.equal(answer.name, "first");
  assert.deepEqual(answer.scopes, ["orders:read", "billing:*"]);
  assert.deepEqual(answer.meta, { plan: "pro" });
  assert.deepEqual(answer.ratelimits, []);
  assert.equal(answer.remaining, null);
  assert.equal(answer.cached, false);
  assert.equal((await kh.verify({ key: created.key, scopes: ["orders:write"] })).code, "INSUFFICIENT_SCOPES");

  const updated = await kh.keys.update(created.key_id, { name: "renamed", scopes: ["orders:write"] });
  assert.equal(updated.name, "renamed");
  assert.equal((await kh.verify({ key: created.key, scopes: ["orders:write"] })).code, "VALID");

  const rotated = await kh.keys.rotate(created.key_id, { grace_period_seconds: 3600 });
  assert.notEqual(rotated.key_id, created.key_id);
  assert.equal((await kh.verify({ key: rotated.key })).code, "VALID");
  const old = await kh.verify({ key: created.key });
  assert.equal(old.code, "VALID", "the old key works during its grace");
  assert.equal(old.rotation.successorKeyId, rotated.key_id);
  assert.ok(Date.parse(old.rotation.graceUntil) > Date.now());

  const revoked = await kh.keys.revoke(rotated.key_id, { reason: "test" });
  assert.ok(revoked.revoked_at);
  assert.equal((await kh.verify({ key: rotated.key })).code, "REVOKED");

  await kh.keys.delete(created.key_id);
  await assert.rejects(kh.keys.get(created.key_id), (e) => {
    assert.ok(e instanceof KeyhavenError);
    assert.equal(e.status, 404);
    assert.equal(e.code, "not_found");
    assert.equal(e.unavailable, false);
    return true;
  });

  const usage = await kh.usage.get(rotated.key_id);
  assert.ok(Array.isArray(usage.data));
  assert.equal(typeof usage.total, "number");
  const audit = await kh.audit.list({ target_id: created.key_id });
  assert.ok(audit.data.length >= 3, "create, update, rotate and delete are audited");
  assert.ok(audit.data.every((e) => e.target_id === created.key_id));
});

test("verify answers unknown and garbled keys without identity", opts, async () => {
  const kh = admin();
  const ks = await freshKeyspace(kh, "unk");
  const { key } = await kh.keys.create({ keyspace_id: ks.id });
  const wrong = key.slice(0, -1) + (key.endsWith("a") ? "b" : "a");
  const malformed = await kh.verify({ key: wrong });
  assert.equal(malformed.valid, false);
  assert.equal(malformed.code, "MALFORMED");
  assert.equal(malformed.keyId, null);
  assert.equal(malformed.owner, null);
  const unknown = await kh.verify({ key: (await import("../dist/index.js")).generateKey(ks.prefix) });
  assert.equal(unknown.code, "NOT_FOUND");
});

test("limited keys are never cached: every call is counted by the server", opts, async () => {
  const kh = admin();
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  try {
    assert.ok(await cached.ready());
    const ks = await freshKeyspace(kh, "lim");
    const limited = await kh.keys.create({
      keyspace_id: ks.id,
      ratelimits: [{ name: "requests", limit: 3, duration_ms: 60_000 }],
    });
    const quota = await kh.keys.create({ keyspace_id: ks.id, quota: { remaining: 3 } });
    for (const k of [limited, quota]) {
      const codes = [];
      for (let i = 0; i < 5; i++) {
        const a = await cached.verify({ key: k.key });
        assert.equal(a.cached, false);
        codes.push(a.code);
      }
      assert.deepEqual(codes.slice(0, 3), ["VALID", "VALID", "VALID"]);
      assert.ok(["RATE_LIMITED", "USAGE_EXCEEDED"].includes(codes[3]), codes.join());
    }
    // A call naming only other limits gets an answer listing none: the key still has
    // limits, so the answer is not cached and its next plain call is counted.
    const named = await kh.keys.create({
      keyspace_id: ks.id,
      ratelimits: [{ name: "requests", limit: 2, duration_ms: 60_000 }],
    });
    for (let i = 0; i < 3; i++) {
      const a = await cached.verify({ key: named.key, ratelimits: [{ name: "other" }] });
      assert.equal(a.code, "VALID");
      assert.deepEqual(a.ratelimits, []);
      assert.equal(a.cached, false);
    }
    const plain = [];
    for (let i = 0; i < 3; i++) plain.push((await cached.verify({ key: named.key })).code);
    assert.deepEqual(plain, ["VALID", "VALID", "RATE_LIMITED"]);
    const first = await kh.verify({ key: (await kh.keys.create({ keyspace_id: ks.id, ratelimits: [{ name: "r", limit: 5, duration_ms: 60_000 }] })).key });
    assert.equal(first.ratelimits.length, 1);
    const [l] = first.ratelimits;
    assert.equal(l.name, "r");
    assert.equal(l.limit, 5);
    assert.equal(l.durationMs, 60_000);
    assert.equal(l.remaining, 4);
    assert.equal(l.exceeded, false);
    assert.ok(Date.parse(l.resetAt) > Date.now());
  } finally {
    await cached.close();
  }
});

test("the cached client serves a verified key locally and decides other scopes itself", opts, async () => {
  const kh = admin();
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  try {
    const ks = await freshKeyspace(kh, "hit");
    const k = await kh.keys.create({ keyspace_id: ks.id, scopes: ["a:*"] });
    assert.ok(await cached.ready());
    await cached.verify({ key: k.key });
    const hit = await cached.verify({ key: k.key, scopes: ["a:b"] });
    assert.equal(hit.cached, true);
    assert.equal(hit.code, "VALID");
    const refused = await cached.verify({ key: k.key, scopes: ["b"] });
    assert.equal(refused.cached, true);
    assert.equal(refused.code, "INSUFFICIENT_SCOPES");
    // A change through the API reaches the cache through the stream.
    await kh.keys.update(k.key_id, { enabled: false });
    let answer;
    for (let i = 0; i < 200; i++) {
      answer = await cached.verify({ key: k.key });
      if (answer.code !== "VALID") break;
      await sleep(5);
    }
    assert.equal(answer.code, "DISABLED");
  } finally {
    await cached.close();
  }
});

test("errors carry the problem's status and code, and never a secret", opts, async () => {
  const kh = admin();
  const ks = await freshKeyspace(kh, "err");
  const { key } = await kh.keys.create({ keyspace_id: ks.id });

  // A root key that may only verify.
  const limited = await kh.request("POST", "/v1/root-keys", { scopes: ["keys:verify"], name: "verify only" });
  const verifier = new Keyhaven({ baseUrl: url, rootKey: limited.key });
  assert.equal((await verifier.verify({ key })).code, "VALID");
  const texts = [];
  await assert.rejects(verifier.keyspaces.create({ name: "x", prefix: "x_no" }), (e) => {
    assert.ok(e instanceof KeyhavenError);
    assert.equal(e.status, 403);
    assert.ok(e.code.startsWith("insufficient_scope"), e.code);
    texts.push(e.message, e.stack, inspect(e), JSON.stringify(e));
    return true;
  });

  const wrong = new Keyhaven({ baseUrl: url, rootKey: key });
  await assert.rejects(wrong.verify({ key }), (e) => {
    assert.equal(e.status, 401);
    assert.equal(e.unavailable, false);
    texts.push(e.message, e.stack, inspect(e), JSON.stringify(e));
    return true;
  });
  await assert.rejects(kh.request("POST", "/v1/keys/verify", { key, nonsense: true }), (e) => {
    assert.equal(e.status, 400);
    texts.push(e.message, e.stack, inspect(e), JSON.stringify(e));
    return true;
  });
  const down = new Keyhaven({ baseUrl: "http://127.0.0.1:9", rootKey, retries: 1 });
  await assert.rejects(down.verify({ key }), (e) => {
    assert.equal(e.code, "unreachable");
    assert.equal(e.unavailable, true);
    texts.push(e.message, e.stack, inspect(e), JSON.stringify(e));
    return true;
  });
  texts.push(inspect(verifier), inspect(kh), JSON.stringify(kh));
  for (const t of texts) {
    for (const secret of [key, rootKey, limited.key]) assert.ok(!t.includes(secret), `secret in: ${t}`);
  }
});

test("a permission query goes to the server and names what is missing", opts, async () => {
  const kh = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  const ks = await freshKeyspace(kh, "perm");
  const created = await kh.keys.create({ keyspace_id: ks.id, permissions: ["docs.read"] });
  assert.equal(await kh.ready(), true);
  // Cached as a plain VALID key...
  for (let i = 0; i < 3; i++) assert.equal((await kh.verify({ key: created.key })).code, "VALID");
  assert.equal((await kh.verify({ key: created.key })).cached, true);
  // ...but a query is decided by the server, every time.
  for (let i = 0; i < 2; i++) {
    const refused = await kh.verify({ key: created.key, permissions: "docs.read AND docs.write" });
    assert.equal(refused.code, "INSUFFICIENT_PERMISSIONS");
    assert.deepEqual(refused.missingPermissions, ["docs.write"]);
    assert.equal(refused.cached, false);
  }
  const held = await kh.verify({ key: created.key, permissions: "docs.read" });
  assert.equal(held.code, "VALID");
  assert.equal(held.missingPermissions, null);
  await assert.rejects(kh.verify({ key: created.key, permissions: "docs.read AND" }), KeyhavenError);
  await kh.close();
});
