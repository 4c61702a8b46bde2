// The guard's pure parts: where the key is read from, and the rate-limit headers.
import assert from "node:assert/strict";
import { test } from "node:test";

import { presentedKey, ratelimitHeaders, retryAfterSeconds } from "../dist/index.js";

test("the key is read from the configured header, then Bearer, then X-API-Key", () => {
  const all = { "x-acme-key": " own ", authorization: "Bearer  bearer ", "x-api-key": " api " };
  assert.equal(presentedKey(all, "X-Acme-Key"), "own");
  assert.equal(presentedKey(all), "bearer");
  assert.equal(presentedKey({ ...all, authorization: "Basic abc" }), "api");
  assert.equal(presentedKey({ authorization: "bearer x" }), "x");
  assert.equal(presentedKey({ authorization: "Bearer   ", "x-api-key": "api" }), "api");
  assert.equal(presentedKey({ authorization: "Bearer" }), undefined);
  assert.equal(presentedKey({ "x-api-key": "  " }), undefined);
  assert.equal(presentedKey({}), undefined);
  // A configured header that is present but blank is no key (as at the gateway).
  assert.equal(presentedKey({ "x-acme-key": " ", authorization: "Bearer b" }, "X-Acme-Key"), undefined);
  assert.equal(presentedKey({ authorization: "Bearer b" }, "X-Acme-Key"), "b");
});

const limit = (name, limit, remaining, exceeded, fields = {}) => ({
  name,
  scope: "key",
  limit,
  durationMs: 60_000,
  remaining,
  resetAt: new Date(1_000_000 + 1_500).toISOString(),
  retryAfterMs: exceeded ? 2_001 : null,
  exceeded,
  ...fields,
});

test("RateLimit headers list every policy and the tightest limit, as the gateway's", () => {
  const now = 1_000_000;
  assert.deepEqual(ratelimitHeaders([], now), {});
  assert.deepEqual(ratelimitHeaders([limit("requests", 100, 40, false), limit("burst", 10, 2, false)], now), {
    "ratelimit-policy": '"requests";q=100;w=60, "burst";q=10;w=60',
    ratelimit: '"burst";r=2;t=2',
  });
  assert.equal(
    ratelimitHeaders([limit("requests", 100, 0, true), limit("burst", 10, 0, false)], now).ratelimit,
    '"requests";r=0;t=2',
  );
});

test("Retry-After is the longest wait of an exceeded limit, in whole seconds, at least 1", () => {
  const now = 1_000_000;
  assert.equal(retryAfterSeconds([limit("a", 1, 0, true), limit("b", 1, 0, false)], now), 3);
  assert.equal(retryAfterSeconds([limit("a", 1, 0, true, { retryAfterMs: null })], now), 2, "from the reset");
  assert.equal(retryAfterSeconds([limit("a", 1, 0, true, { retryAfterMs: 1 })], now), 1);
  assert.equal(retryAfterSeconds([], now), 1);
});
