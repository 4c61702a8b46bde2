// What a protected app answers, the same for Express and Fastify. The app under test
// has these routes:
//   GET /whoami     guard({ client })                          → 200 the identity
//   GET /admin      guard({ client, scopes: ["admin"] })
//   GET /custom     guard({ client, header: "X-Acme-Key" })
//   GET /down       guard({ client: unreachable })
//   GET /down-open  guard({ client: unreachable, failOpen: true })
//   GET /public     no guard
import assert from "node:assert/strict";

import { generateKey } from "../dist/index.js";
import { admin, freshKeyspace, sleep } from "./helpers.js";

/** Keys of every kind, made once per app. */
export async function makeKeys(base) {
  const kh = admin();
  const ks = await freshKeyspace(kh, base);
  const owner = await kh.owners.create({ external_id: `ext-${ks.prefix}` });
  const make = (body = {}) => kh.keys.create({ keyspace_id: ks.id, ...body });
  const valid = await make({ owner_id: owner.id, scopes: ["orders:read"] });
  const admin_ = await make({ scopes: ["admin"] });
  const revoked = await make();
  await kh.keys.revoke(revoked.key_id);
  const disabled = await make({ enabled: false });
  const expiring = await make({ expires_at: new Date(Date.now() + 2000).toISOString() });
  const limited = await make({ ratelimits: [{ name: "requests", limit: 1, duration_ms: 60_000 }] });
  const quota = await make({ quota: { remaining: 1 } });
  const local = await make({ ip_allowlist: ["127.0.0.0/8", "::1"] });
  const remote = await make({ ip_allowlist: ["203.0.113.0/24"] });
  return {
    kh, ks, owner, valid, admin: admin_, revoked, disabled, expiring, limited, quota, local, remote,
    unknown: generateKey(ks.prefix),
  };
}

const get = (base, path, headers = {}) => fetch(base + path, { headers });

async function problem(res, status, code) {
  assert.equal(res.status, status, `expected ${status} ${code}, got ${res.status}`);
  assert.equal(res.headers.get("content-type"), "application/problem+json");
  const body = await res.json();
  assert.equal(body.status, status);
  assert.equal(body.code, code);
  assert.equal(body.type, `urn:keyhaven:problem:${code}`);
  assert.equal(typeof body.title, "string");
  assert.equal(typeof body.detail, "string");
  return body;
}

const bearer = (k) => ({ authorization: `Bearer ${k.key ?? k}` });

/** Runs every case against the app at `base`; `keys` from {@link makeKeys}. */
export async function runCases(base, keys) {
  // Valid key, each way of presenting it; the identity is on the request.
  let res = await get(base, "/whoami", bearer(keys.valid));
  assert.equal(res.status, 200);
  const who = await res.json();
  assert.equal(who.keyId, keys.valid.key_id);
  assert.equal(who.keyspaceId, keys.ks.id);
  assert.equal(who.ownerId, keys.owner.id);
  assert.equal(who.ownerExternalId, keys.owner.external_id);
  assert.deepEqual(who.scopes, ["orders:read"]);
  assert.equal((await get(base, "/whoami", { "x-api-key": keys.valid.key })).status, 200);
  assert.equal((await get(base, "/whoami", { authorization: `bearer   ${keys.valid.key}  ` })).status, 200);
  assert.equal((await get(base, "/custom", { "x-acme-key": keys.valid.key })).status, 200);
  assert.equal((await get(base, "/public")).status, 200);

  // Missing: no header, another scheme, or only in the query string (never read).
  for (const [path, headers] of [
    ["/whoami", {}],
    ["/whoami", { authorization: `Basic ${Buffer.from("a:b").toString("base64")}` }],
    [`/whoami?api_key=${keys.valid.key}&key=${keys.valid.key}`, {}],
  ]) {
    res = await get(base, path, headers);
    await problem(res, 401, "missing_key");
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="api"');
  }

  // Refused keys: 401 with invalid_token.
  const wrongSecret = keys.valid.key.slice(0, -1) + (keys.valid.key.endsWith("a") ? "b" : "a");
  for (const [key, code] of [
    [keys.unknown, "not_found"],
    [wrongSecret, "malformed"],
    ["not a key at all", "malformed"],
    [keys.revoked.key, "revoked"],
    [keys.disabled.key, "disabled"],
  ]) {
    res = await get(base, "/whoami", bearer(key));
    await problem(res, 401, code);
    assert.equal(res.headers.get("www-authenticate"), 'Bearer realm="api", error="invalid_token"');
  }

  // Scopes: 403, and the key with the scope passes.
  res = await get(base, "/admin", bearer(keys.valid));
  await problem(res, 403, "insufficient_scopes");
  assert.equal(res.headers.get("www-authenticate"), null);
  assert.equal((await get(base, "/admin", bearer(keys.admin))).status, 200);

  // IP allowlists: the app passes the caller's address; outside the list is 403.
  assert.equal((await get(base, "/whoami", bearer(keys.local))).status, 200);
  res = await get(base, "/whoami", bearer(keys.remote));
  await problem(res, 403, "forbidden_ip");
  assert.equal(res.headers.get("www-authenticate"), null);

  // Rate limit of 1: the second call is 429 with Retry-After and the RateLimit headers.
  res = await get(base, "/whoami", bearer(keys.limited));
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("ratelimit-policy"), '"requests";q=1;w=60');
  assert.match(res.headers.get("ratelimit"), /^"requests";r=0;t=\d+$/);
  res = await get(base, "/whoami", bearer(keys.limited));
  await problem(res, 429, "rate_limited");
  const retryAfter = Number(res.headers.get("retry-after"));
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  assert.equal(res.headers.get("ratelimit-policy"), '"requests";q=1;w=60');

  // Quota of 1: the second call is 429 usage_exceeded.
  assert.equal((await get(base, "/whoami", bearer(keys.quota))).status, 200);
  await problem(await get(base, "/whoami", bearer(keys.quota)), 429, "usage_exceeded");

  // Keyhaven unreachable: 503, unless fail-open.
  await problem(await get(base, "/down", bearer(keys.valid)), 503, "unavailable");
  res = await get(base, "/down-open", bearer(keys.valid));
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { identity: null });
  // Without a key, fail-open does not matter: 401.
  await problem(await get(base, "/down-open"), 401, "missing_key");

  // Expired (the key was made to expire 2 s after creation).
  const wait = Date.parse(keys.expiring.expires_at) - Date.now() + 100;
  if (wait > 0) await sleep(wait);
  await problem(await get(base, "/whoami", bearer(keys.expiring)), 401, "expired");
}
