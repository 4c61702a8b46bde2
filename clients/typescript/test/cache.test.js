// The cache's rules, with time moved by hand.
import assert from "node:assert/strict";
import { test } from "node:test";

import { scopesGrant } from "../dist/index.js";
import { VerifyCache, cacheable } from "../dist/cache.js";

function answer(fields = {}) {
  return {
    valid: true,
    code: "VALID",
    keyId: "k1",
    keyspaceId: "ks_1",
    keyspace: "acme",
    owner: { id: "own_1", externalId: "cust-1" },
    name: null,
    scopes: ["orders:read", "billing:*"],
    meta: { plan: "pro" },
    expiresAt: null,
    rotation: null,
    ratelimits: [],
    remaining: null,
    cached: false,
    ...fields,
  };
}

function clock() {
  let t = 1_000;
  const now = () => t;
  now.advance = (ms) => (t += ms);
  return now;
}

function coherentCache(options = {}) {
  const now = clock();
  const cache = new VerifyCache({ coherenceMs: 1000, ...options }, now);
  cache.heard();
  return { cache, now };
}

test("the scope rule is the server's", () => {
  assert.ok(scopesGrant(["keys:read"], "keys:read"));
  assert.ok(scopesGrant(["*"], "anything"));
  assert.ok(scopesGrant(["keys:*"], "keys:read"));
  assert.ok(!scopesGrant(["keys:*"], "keys:"));
  assert.ok(!scopesGrant(["keys:*"], "keyspaces:read"));
  assert.ok(!scopesGrant(["keys:read"], "keys:*"));
  assert.ok(!scopesGrant(["admin*"], "admin:read"));
  assert.ok(!scopesGrant([], "x"));
});

test("only a VALID answer without limits or quota is cacheable", () => {
  assert.ok(cacheable(answer()));
  assert.ok(!cacheable(answer({ valid: false, code: "REVOKED" })));
  assert.ok(!cacheable(answer({ remaining: 10 })));
  assert.ok(
    !cacheable(
      answer({
        ratelimits: [{ name: "r", scope: "key", limit: 5, durationMs: 1000, remaining: 4, resetAt: "", retryAfterMs: null, exceeded: false }],
      }),
    ),
  );
  const { cache } = coherentCache();
  assert.equal(cache.fill("d", answer({ remaining: 3 }), cache.epoch, true), false);
  assert.equal(cache.lookup("d", []), undefined);
});

test("a cached answer is served, marked cached, and decided locally for other scopes", () => {
  const { cache } = coherentCache();
  assert.ok(cache.fill("d", answer(), cache.epoch, true));
  const hit = cache.lookup("d", []);
  assert.equal(hit.valid, true);
  assert.equal(hit.cached, true);
  assert.equal(hit.keyId, "k1");
  assert.equal(cache.lookup("d", ["orders:read", "billing:charge"]).code, "VALID");
  const refused = cache.lookup("d", ["orders:write"]);
  assert.equal(refused.valid, false);
  assert.equal(refused.code, "INSUFFICIENT_SCOPES");
  assert.equal(refused.keyId, "k1");
  assert.equal(cache.lookup("d", ["billing:"]).code, "INSUFFICIENT_SCOPES");
  assert.equal(cache.lookup("other", []), undefined);
});

test("nothing is served once the stream has been silent for half the coherence bound", () => {
  const { cache, now } = coherentCache();
  cache.fill("d", answer(), cache.epoch, true);
  now.advance(500);
  assert.ok(cache.lookup("d", []));
  now.advance(1);
  assert.equal(cache.lookup("d", []), undefined);
  cache.heard();
  assert.ok(cache.lookup("d", []), "served again once the stream speaks");
  cache.forget();
  assert.equal(cache.lookup("d", []), undefined);
});

test("an answer fetched while the stream was not trusted is not kept", () => {
  const now = clock();
  const cache = new VerifyCache({}, now);
  assert.equal(cache.coherent(), false);
  assert.equal(cache.fill("d", answer(), cache.epoch, false), false);
});

test("an answer fetched while an invalidation arrived is not kept", () => {
  const { cache } = coherentCache();
  const before = cache.epoch;
  cache.invalidateKey("someone-else");
  assert.equal(cache.fill("d", answer(), before, true), false);
  assert.equal(cache.lookup("d", []), undefined);
});

test("key events drop that key's answers, all-events every answer", () => {
  const { cache } = coherentCache();
  cache.fill("d1", answer({ keyId: "k1" }), cache.epoch, true);
  cache.fill("d1b", answer({ keyId: "k1" }), cache.epoch, true);
  cache.fill("d2", answer({ keyId: "k2" }), cache.epoch, true);
  cache.invalidateKey("k1");
  assert.equal(cache.lookup("d1", []), undefined);
  assert.equal(cache.lookup("d1b", []), undefined);
  assert.ok(cache.lookup("d2", []));
  cache.invalidateAll();
  assert.equal(cache.lookup("d2", []), undefined);
  assert.equal(cache.size, 0);
});

test("an answer never outlives the TTL, the key's expiry or its rotation grace", () => {
  const { cache, now } = coherentCache({ ttlMs: 10_000, coherenceMs: 1_000_000 });
  cache.fill("ttl", answer(), cache.epoch, true);
  const soon = new Date(Date.now() + 3_000).toISOString();
  cache.fill("exp", answer({ keyId: "k2", expiresAt: soon }), cache.epoch, true);
  cache.fill("grace", answer({ keyId: "k3", rotation: { successorKeyId: "k4", graceUntil: soon } }), cache.epoch, true);
  const past = new Date(Date.now() - 1).toISOString();
  assert.equal(cache.fill("gone", answer({ keyId: "k5", expiresAt: past }), cache.epoch, true), false);
  now.advance(2_900);
  assert.ok(cache.lookup("exp", []));
  assert.ok(cache.lookup("grace", []));
  now.advance(200);
  assert.equal(cache.lookup("exp", []), undefined);
  assert.equal(cache.lookup("grace", []), undefined);
  assert.ok(cache.lookup("ttl", []));
  now.advance(7_000);
  assert.equal(cache.lookup("ttl", []), undefined);
});

test("the cache holds at most maxEntries, dropping the oldest", () => {
  const { cache } = coherentCache({ maxEntries: 3 });
  for (const d of ["a", "b", "c", "d"]) cache.fill(d, answer({ keyId: d }), cache.epoch, true);
  assert.equal(cache.size, 3);
  assert.equal(cache.lookup("a", []), undefined);
  assert.ok(cache.lookup("d", []));
});

test("cached answers cannot be changed by a caller", () => {
  const { cache } = coherentCache();
  const original = answer();
  cache.fill("d", original, cache.epoch, true);
  original.scopes.push("*");
  const hit = cache.lookup("d", []);
  assert.deepEqual(hit.scopes, ["orders:read", "billing:*"]);
  assert.throws(() => hit.scopes.push("*"));
  assert.throws(() => {
    "use strict";
    hit.valid = false;
  });
});

test("bad cache options are refused", () => {
  assert.throws(() => new VerifyCache({ ttlMs: 0 }));
  assert.throws(() => new VerifyCache({ coherenceMs: -1 }));
});
