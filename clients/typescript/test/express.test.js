// A real Express app on 127.0.0.1 protected by keyhaven.express, against a real Keyhaven.
import assert from "node:assert/strict";
import { test } from "node:test";

import express from "express";

import keyhaven, { Keyhaven } from "../dist/index.js";
import { listen, needsServer, rootKey, url } from "./helpers.js";
import { makeKeys, runCases } from "./middleware-cases.js";

async function start(client) {
  const down = new Keyhaven({ baseUrl: "http://127.0.0.1:9", rootKey, retries: 0 });
  const app = express();
  const identity = (req, res) => res.json(req.keyhaven);
  app.get("/whoami", keyhaven.express({ client }), identity);
  app.get("/admin", keyhaven.express({ client, scopes: ["admin"] }), identity);
  app.get("/custom", keyhaven.express({ client, header: "X-Acme-Key" }), identity);
  app.get("/down", keyhaven.express({ client: down }), identity);
  app.get("/down-open", keyhaven.express({ client: down, failOpen: true }), (req, res) =>
    res.json({ identity: req.keyhaven ?? null }),
  );
  app.get("/public", (req, res) => res.json({ public: true }));
  const server = app.listen(0, "127.0.0.1");
  await new Promise((r) => server.once("listening", r));
  return { base: `http://127.0.0.1:${server.address().port}`, server };
}

for (const cache of [false, true]) {
  test(`Express: every refusal and admission, ${cache ? "cached" : "uncached"} client`, { skip: needsServer }, async () => {
    const client = new Keyhaven({ baseUrl: url, rootKey, cache });
    const { base, server } = await start(client);
    try {
      if (cache) assert.ok(await client.ready());
      await runCases(base, await makeKeys(cache ? "exc" : "exu"));
    } finally {
      server.close();
      await client.close();
    }
  });
}

test("Express: the cached client answers a known key without asking the server", { skip: needsServer }, async () => {
  const client = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  const { base, server } = await start(client);
  try {
    assert.ok(await client.ready());
    const keys = await makeKeys("exh");
    const headers = { authorization: `Bearer ${keys.valid.key}` };
    let who;
    for (let i = 0; i < 50; i++) {
      who = await (await fetch(`${base}/whoami`, { headers })).json();
      if (who.cached) break;
    }
    assert.equal(who.cached, true);
    assert.equal(who.keyId, keys.valid.key_id);
    const res = await fetch(`${base}/admin`, { headers });
    assert.equal(res.status, 403, "other scopes decided from the cache");
  } finally {
    server.close();
    await client.close();
  }
});

test("Express: options are checked when the middleware is made", () => {
  assert.throws(() => keyhaven.express({}), TypeError);
});
