// A real Fastify app on 127.0.0.1 protected by keyhaven.fastify (a preHandler per route)
// and by keyhaven.fastifyPlugin (every route), against a real Keyhaven.
import assert from "node:assert/strict";
import { test } from "node:test";

import Fastify from "fastify";

import keyhaven, { Keyhaven } from "../dist/index.js";
import { needsServer, rootKey, url } from "./helpers.js";
import { makeKeys, runCases } from "./middleware-cases.js";

const down = () => new Keyhaven({ baseUrl: "http://127.0.0.1:9", rootKey, retries: 0 });

/** Routes each with its own preHandler. */
async function perRoute(client) {
  const app = Fastify();
  const unreachable = down();
  const identity = async (request) => request.keyhaven;
  app.get("/whoami", { preHandler: keyhaven.fastify({ client }) }, identity);
  app.get("/admin", { preHandler: keyhaven.fastify({ client, scopes: ["admin"] }) }, identity);
  app.get("/custom", { preHandler: keyhaven.fastify({ client, header: "X-Acme-Key" }) }, identity);
  app.get("/down", { preHandler: keyhaven.fastify({ client: unreachable }) }, identity);
  app.get("/down-open", { preHandler: keyhaven.fastify({ client: unreachable, failOpen: true }) }, async (request) => ({
    identity: request.keyhaven ?? null,
  }));
  app.get("/public", async () => ({ public: true }));
  return app;
}

/**
 * The plugin, one encapsulated context per guard: routes say what more they need in
 * `config.keyhaven` (`false`: public).
 */
async function plugin(client) {
  const app = Fastify();
  const identity = async (request) => request.keyhaven;
  const unreachable = down();
  await app.register(async (c) => {
    await c.register(keyhaven.fastifyPlugin, { client });
    c.get("/whoami", identity);
    c.get("/admin", { config: { keyhaven: { scopes: ["admin"] } } }, identity);
    c.get("/public", { config: { keyhaven: false } }, async () => ({ public: true }));
  });
  await app.register(async (c) => {
    await c.register(keyhaven.fastifyPlugin, { client, header: "X-Acme-Key" });
    c.get("/custom", identity);
  });
  await app.register(async (c) => {
    await c.register(keyhaven.fastifyPlugin, { client: unreachable });
    c.get("/down", identity);
  });
  await app.register(async (c) => {
    await c.register(keyhaven.fastifyPlugin, { client: unreachable, failOpen: true });
    c.get("/down-open", async (request) => ({ identity: request.keyhaven ?? null }));
  });
  return app;
}

for (const [name, build] of [["preHandler", perRoute], ["plugin", plugin]]) {
  for (const cache of [false, true]) {
    test(`Fastify ${name}: every refusal and admission, ${cache ? "cached" : "uncached"} client`, { skip: needsServer }, async () => {
      const client = new Keyhaven({ baseUrl: url, rootKey, cache });
      const app = await build(client);
      const base = await app.listen({ port: 0, host: "127.0.0.1" });
      try {
        if (cache) assert.ok(await client.ready());
        await runCases(base, await makeKeys(`f${name === "plugin" ? "p" : "h"}${cache ? "c" : "u"}`));
      } finally {
        await app.close();
        await client.close();
      }
    });
  }
}

test("Fastify: the plugin guards every route of the context it is registered in", { skip: needsServer }, async () => {
  const client = new Keyhaven({ baseUrl: url, rootKey });
  const app = Fastify();
  await app.register(keyhaven.fastifyPlugin, { client, scopes: ["orders:read"] });
  app.get("/a", async (request) => request.keyhaven);
  app.post("/b", async (request) => ({ keyId: request.keyhaven.keyId }));
  const base = await app.listen({ port: 0, host: "127.0.0.1" });
  try {
    const keys = await makeKeys("fpg");
    assert.equal((await fetch(`${base}/a`)).status, 401);
    assert.equal((await fetch(`${base}/b`, { method: "POST" })).status, 401);
    const headers = { authorization: `Bearer ${keys.valid.key}` };
    assert.equal((await (await fetch(`${base}/a`, { headers })).json()).keyId, keys.valid.key_id);
    assert.equal((await (await fetch(`${base}/b`, { method: "POST", headers })).json()).keyId, keys.valid.key_id);
    assert.equal((await fetch(`${base}/a`, { headers: { authorization: `Bearer ${keys.admin.key}` } })).status, 403);
  } finally {
    await app.close();
  }
});
