// Signed tokens through the TypeScript client: checked offline against the server's
// JWKS with Node's Ed25519, answered offline once the server vouched for their key, and
// refused within 1 s of the key's revocation by a client following the change stream.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Keyhaven } from "../dist/index.js";
import { admin, freshKeyspace, needsServer, rootKey, sleep, url } from "./helpers.js";

async function mint(key, body = {}) {
  const r = await fetch(`${url}/v1/tokens`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await r.json();
  assert.equal(r.status, 201, JSON.stringify(answer));
  return answer.token;
}

/** A fetch that counts calls to the verify endpoint. */
function counting() {
  const calls = { verify: 0 };
  const f = (input, init) => {
    if (String(input).endsWith("/v1/keys/verify")) calls.verify++;
    return fetch(input, init);
  };
  return { calls, fetch: f };
}

test("tokens are answered offline once vouched for and refused within 1 s of revocation", { skip: needsServer }, async () => {
  const kh = admin();
  const { calls, fetch: f } = counting();
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true, fetch: f });
  try {
    assert.ok(await cached.ready(), "the change stream spoke");
    const ks = await freshKeyspace(kh, "tok");
    const k = await kh.keys.create({ keyspace_id: ks.id, scopes: ["read", "write"] });
    const first = await mint(k.key, { scopes: ["read"] });
    let answer = await cached.verify({ key: first });
    assert.ok(answer.valid && answer.token, JSON.stringify(answer));
    assert.equal(calls.verify, 1, "the key's first token asks the server");

    const second = await mint(k.key, { scopes: ["write"] });
    answer = await cached.verify({ key: second });
    assert.ok(answer.valid && answer.token && answer.cached, JSON.stringify(answer));
    assert.deepEqual(answer.scopes, ["write"]);
    assert.equal(answer.keyId, k.key_id);
    const refused = await cached.verify({ key: second, scopes: ["read"] });
    assert.equal(refused.code, "INSUFFICIENT_SCOPES");
    const [head, , signature] = second.split(".");
    const forged = `${head}.${first.split(".")[1]}.${signature}`;
    assert.equal((await cached.verify({ key: forged })).code, "NOT_FOUND");
    const none = `${Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url")}.${first.split(".")[1]}.`;
    assert.equal((await cached.verify({ key: none })).code, "NOT_FOUND");
    assert.equal(calls.verify, 1, "all of that offline");

    const start = performance.now();
    await kh.keys.revoke(k.key_id);
    for (;;) {
      answer = await cached.verify({ key: second });
      if (!answer.valid) break;
      assert.ok(performance.now() - start < 1_000, "still valid 1 s after its key's revocation");
      await new Promise((r) => setImmediate(r));
    }
    assert.equal(answer.code, "REVOKED");
    console.log(`a revoked key's token refused after ${(performance.now() - start).toFixed(1)} ms`);
  } finally {
    await cached.close();
  }
});

test("audiences and expiry are checked without the server", { skip: needsServer }, async () => {
  const kh = admin();
  const { calls, fetch: f } = counting();
  const client = new Keyhaven({ baseUrl: url, rootKey, fetch: f });
  const ks = await freshKeyspace(kh, "tok");
  const k = await kh.keys.create({ keyspace_id: ks.id });
  const token = await mint(k.key, { audience: "billing", ttl_seconds: 1 });
  assert.equal((await client.verify({ key: token })).code, "NOT_FOUND");
  assert.equal((await client.verify({ key: token, audience: "search" })).code, "NOT_FOUND");
  assert.equal(calls.verify, 0);
  assert.ok((await client.verify({ key: token, audience: "billing" })).valid);
  assert.equal(calls.verify, 1, "without a cache, VALID is the server's to say");
  await sleep(2_050);
  assert.equal((await client.verify({ key: token, audience: "billing" })).code, "EXPIRED");
  assert.equal(calls.verify, 1);
});
