// Benchmarks of the TypeScript client, printed, never asserted. Needs a real Keyhaven:
//
//   scripts/with-server.sh bash -c 'cd clients/typescript && npm run bench'
//
// 1. Cached verify: calls per second of `kh.verify()` answered from the local cache, in
//    one Node.js thread (one core), yielding to the event loop every 10,000 calls so the
//    change stream's heartbeats keep the cache trusted (as a server's requests would).
// 2. The Express middleware's added latency: the same Express route with and without
//    `keyhaven.express` (cached client), requested one at a time over a kept-alive
//    connection from this process, the app in a child process; interleaved, same run.
//    The uncached middleware (a server round trip per request) is shown for comparison.
import { fork } from "node:child_process";
import { Agent, request } from "node:http";
import { fileURLToPath } from "node:url";

import keyhaven, { Keyhaven } from "../dist/index.js";

const url = process.env.KEYHAVEN_URL;
const rootKey = process.env.KEYHAVEN_ROOT_KEY;
if (!url || !rootKey) {
  console.error("bench: KEYHAVEN_URL and KEYHAVEN_ROOT_KEY are not set; run it through scripts/with-server.sh");
  process.exit(2);
}

const turn = () => new Promise((r) => setImmediate(r));

async function makeKey(kh, scopes) {
  const letters = Array.from({ length: 6 }, () => String.fromCharCode(97 + Math.floor(Math.random() * 26))).join("");
  const ks = await kh.keyspaces.create({ name: `bench_${letters}`, prefix: `bench_${letters}` });
  return kh.keys.create({ keyspace_id: ks.id, scopes });
}

async function untilCached(kh, key) {
  for (let i = 0; i < 1000; i++) {
    if ((await kh.verify({ key })).cached) return;
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error("the key's answer was never cached");
}

// ---- the Express app (child process) ------------------------------------------------

async function serveApp() {
  const { default: express } = await import("express");
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  const uncached = new Keyhaven({ baseUrl: url, rootKey });
  await cached.ready();
  const app = express();
  const handler = (req, res) => res.json({ ok: true, keyId: req.keyhaven?.keyId ?? null });
  app.get("/plain", handler);
  app.get("/guarded", keyhaven.express({ client: cached, scopes: ["bench:read"] }), handler);
  app.get("/uncached", keyhaven.express({ client: uncached, scopes: ["bench:read"] }), handler);
  const server = app.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }));
  process.on("message", async (m) => {
    if (m === "stop") {
      server.close();
      await cached.close();
      process.exit(0);
    }
  });
}

// ---- the measurements -----------------------------------------------------------------

async function cachedVerify(kh, key) {
  const batch = 10_000;
  const rounds = [];
  let served = 0;
  let total = 0;
  for (let warm = 0; warm < 20; warm++) {
    for (let i = 0; i < batch; i++) await kh.verify({ key, scopes: ["bench:read"] });
    await turn();
  }
  for (let round = 0; round < 5; round++) {
    const calls = 50 * batch;
    const start = process.hrtime.bigint();
    for (let b = 0; b < calls / batch; b++) {
      for (let i = 0; i < batch; i++) {
        if ((await kh.verify({ key, scopes: ["bench:read"] })).cached) served++;
      }
      await turn();
    }
    const s = Number(process.hrtime.bigint() - start) / 1e9;
    rounds.push(calls / s);
    total += calls;
  }
  rounds.sort((a, b) => a - b);
  return { median: rounds[2], best: rounds[4], worst: rounds[0], served, total };
}

/**
 * The middleware's own cost per request, without HTTP: the Express guard (cached client)
 * called on a bare request and response, next() resolving a promise.
 */
async function middlewareCost(client, key) {
  const guard = keyhaven.express({ client, scopes: ["bench:read"] });
  const res = { setHeader() {}, end() { throw new Error("refused"); } };
  const once = () =>
    new Promise((resolve) => {
      const req = { headers: { authorization: `Bearer ${key}` }, ip: "127.0.0.1" };
      guard(req, res, () => resolve(req.keyhaven));
    });
  const batch = 10_000;
  for (let i = 0; i < 5 * batch; i++) if (i % batch === 0) await turn(); else await once();
  const rounds = [];
  for (let round = 0; round < 5; round++) {
    const start = process.hrtime.bigint();
    for (let b = 0; b < 20; b++) {
      for (let i = 0; i < batch; i++) await once();
      await turn();
    }
    rounds.push(Number(process.hrtime.bigint() - start) / 1e3 / (20 * batch));
  }
  rounds.sort((a, b) => a - b);
  return rounds[2];
}

function get(agent, port, path, headers) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const req = request({ host: "127.0.0.1", port, path, agent, headers }, (res) => {
      res.resume();
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`${path} answered ${res.statusCode}`));
        else resolve(Number(process.hrtime.bigint() - start) / 1e3);
      });
    });
    req.on("error", reject);
    req.end();
  });
}

function stats(us) {
  const s = [...us].sort((a, b) => a - b);
  const at = (p) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)];
  return { p50: at(0.5), p90: at(0.9), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

async function middlewareLatency(key) {
  const child = fork(fileURLToPath(import.meta.url), ["--app"], { stdio: "inherit" });
  const { port } = await new Promise((r) => child.once("message", r));
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const headers = { authorization: `Bearer ${key}` };
  const routes = ["/plain", "/guarded", "/uncached"];
  const times = Object.fromEntries(routes.map((r) => [r, []]));
  try {
    for (let i = 0; i < 2_000; i++) for (const r of routes) await get(agent, port, r, headers);
    const n = 5_000;
    for (let i = 0; i < n; i++) {
      // Interleaved in a random order, so drift (CPU frequency, other work on the
      // machine) and the position in the sequence hit all routes alike.
      const order = [...routes].sort(() => Math.random() - 0.5);
      for (const r of order) times[r].push(await get(agent, port, r, headers));
      if (i % 500 === 0) await turn();
    }
  } finally {
    agent.destroy();
    child.send("stop");
  }
  return { n: times["/plain"].length, ...Object.fromEntries(routes.map((r) => [r, stats(times[r])])) };
}

async function main() {
  const kh = new Keyhaven({ baseUrl: url, rootKey });
  const created = await makeKey(kh, ["bench:*"]);
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  try {
    if (!(await cached.ready())) throw new Error("the change stream did not speak");
    await untilCached(cached, created.key);
    const v = await cachedVerify(cached, created.key);
    const k = (x) => `${Math.round(x / 1000)}k`;
    console.log(
      `cached verify, one Node.js thread: ${k(v.median)} calls/s median of 5 rounds of 500k ` +
        `(best ${k(v.best)}, worst ${k(v.worst)}); ${v.served} of ${v.total} answered from the cache`,
    );
    const us = await middlewareCost(cached, created.key);
    console.log(`keyhaven.express (cached) called in-process, no HTTP: ${us.toFixed(2)} µs per request (median of 5 rounds of 200k)`);
  } finally {
    await cached.close();
  }

  const m = await middlewareLatency(created.key);
  const f = (x) => `${x.toFixed(0)} µs`;
  const line = (name, s) => `  ${name.padEnd(36)} p50 ${f(s.p50)}  p90 ${f(s.p90)}  p99 ${f(s.p99)}  mean ${f(s.mean)}`;
  console.log(`Express, ${m.n} sequential requests per route over one kept-alive connection:`);
  console.log(line("route alone", m["/plain"]));
  console.log(line("route + keyhaven.express (cached)", m["/guarded"]));
  console.log(line("route + keyhaven.express (uncached)", m["/uncached"]));
  console.log(
    `  added by the cached middleware: ${f(m["/guarded"].p50 - m["/plain"].p50)} at p50, ` +
      `${f(m["/guarded"].mean - m["/plain"].mean)} on average; ` +
      `uncached: ${f(m["/uncached"].p50 - m["/plain"].p50)} at p50`,
  );
}

if (process.argv.includes("--app")) {
  await serveApp();
} else {
  await main();
}
