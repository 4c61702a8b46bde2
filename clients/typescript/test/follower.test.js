// The change-stream follower and the transport, against a fake Keyhaven whose stream the
// test writes by hand (the real server is exercised by the other suites).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { inspect } from "node:util";

import { generateKey, Keyhaven, KeyhavenError } from "../dist/index.js";
import { listen, sleep } from "./helpers.js";

const ROOT = generateKey("kh_root");
const KEY = generateKey("fake");

/** The fake server's state: stream connections and verify calls. */
const fake = {
  streams: [], // { res, lastEventId }
  verifies: 0,
  onStream: null, // (res, req) => handled?
};

const server = createServer((req, res) => {
  if (req.headers.authorization !== `Bearer ${ROOT}`) {
    res.writeHead(401, { "content-type": "application/problem+json" });
    res.end(JSON.stringify({ type: "x", title: "Unauthorized", status: 401, code: "unauthorized", detail: "bad root key" }));
    return;
  }
  if (req.url === "/v1/changes") {
    fake.streams.push({ res, lastEventId: req.headers["last-event-id"] });
    res.writeHead(200, { "content-type": "text/event-stream" });
    res.flushHeaders();
    return;
  }
  if (req.url === "/v1/keys/verify") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      fake.verifies++;
      const { key } = JSON.parse(body);
      res.writeHead(200, { "content-type": "application/json" });
      res.end(
        JSON.stringify(
          key === KEY
            ? { valid: true, code: "VALID", key_id: "kid_1", keyspace_id: "ks_1", keyspace: "fake", owner: null, name: null, scopes: ["a"], meta: {}, expires_at: null, rotation: null, ratelimits: [], remaining: null }
            : { valid: false, code: "NOT_FOUND", ratelimits: [] },
        ),
      );
    });
    return;
  }
  if (req.url === "/v1/echo") {
    // A problem that (wrongly) repeats the caller's secrets.
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      res.writeHead(400, { "content-type": "application/problem+json" });
      res.end(JSON.stringify({ type: "x", title: `bad ${ROOT}`, status: 400, code: "validation_failed", detail: `you sent ${body} with ${req.headers.authorization}` }));
    });
    return;
  }
  res.writeHead(404).end();
});

let base;
before(async () => {
  base = await listen(server);
});
after(() => {
  for (const s of fake.streams) s.res.destroy();
  server.closeAllConnections();
  server.close();
});

const send = (stream, text) => stream.res.write(text);
const latest = () => fake.streams[fake.streams.length - 1];

async function until(what, condition, ms = 3000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function client(extra = {}) {
  return new Keyhaven({ baseUrl: base, rootKey: ROOT, cache: { coherenceMs: 400 }, ...extra });
}

/** Verifies until an answer comes from the cache, the stream `s` vouching meanwhile. */
async function fillCache(kh, s) {
  for (let i = 0; i < 100; i++) {
    if ((await kh.verify({ key: KEY })).cached) return;
    send(s, "event: heartbeat\ndata: {}\n\n");
    await sleep(5);
  }
  assert.fail("never cached");
}

test("heartbeats make the cache trusted; a key event drops the key, an unknown event everything", async () => {
  const kh = client();
  try {
    const first = fake.streams.length;
    const verifyPromise = kh.verify({ key: KEY }); // starts the follower
    await until("a stream", () => fake.streams.length > first);
    const s = latest();
    assert.equal(s.lastEventId, undefined);
    assert.equal((await verifyPromise).cached, false);
    send(s, "id: e-1\nevent: heartbeat\ndata: {}\n\n");
    await until("coherence", () => kh.coherent);
    await fillCache(kh, s);

    const processed = (id) => until(`event ${id}`, () => kh.streamCursor === id);
    const calls = fake.verifies;
    send(s, 'id: e-2\nevent: key\ndata: {"key_id":"other"}\n\n');
    await processed("e-2");
    assert.equal((await kh.verify({ key: KEY })).cached, true, "another key's event leaves it");
    send(s, 'id: e-3\nevent: key\ndata: {"key_id":"kid_1"}\n\n');
    await processed("e-3");
    assert.equal((await kh.verify({ key: KEY })).cached, false, "its own event drops it");
    assert.equal(fake.verifies, calls + 1);

    send(s, "id: e-4\nevent: heartbeat\ndata: {}\n\n");
    await processed("e-4");
    await fillCache(kh, s);
    send(s, "id: e-5\nevent: something-new\ndata: {}\n\n");
    await processed("e-5");
    assert.equal((await kh.verify({ key: KEY })).cached, false, "an unknown event drops everything");

    send(s, "id: e-6\nevent: heartbeat\ndata: {}\n\n");
    await processed("e-6");
    await fillCache(kh, s);
    send(s, "id: e-7\nevent: all\ndata: {}\n\n");
    await processed("e-7");
    assert.equal((await kh.verify({ key: KEY })).cached, false, "all drops everything");
  } finally {
    await kh.close();
  }
});

test("only heartbeats and resets vouch: events alone do not keep the cache trusted", async () => {
  const kh = client();
  try {
    const first = fake.streams.length;
    await kh.verify({ key: KEY });
    await until("a stream", () => fake.streams.length > first);
    const s = latest();
    send(s, "id: e-1\nevent: heartbeat\ndata: {}\n\n");
    await fillCache(kh, s);
    // Key events of other keys keep coming, but no heartbeat: trusted for 200 ms only.
    const timer = setInterval(() => send(s, 'event: key\ndata: {"key_id":"zz"}\n\n'), 20);
    await sleep(260);
    clearInterval(timer);
    assert.equal(kh.coherent, false);
    assert.equal((await kh.verify({ key: KEY })).cached, false);
    send(s, "id: r-1\nevent: reset\ndata: {}\n\n");
    await until("coherence after reset", () => kh.coherent);
  } finally {
    await kh.close();
  }
});

test("a stream that ends is reopened with Last-Event-ID, and distrusted meanwhile", async () => {
  const kh = client();
  try {
    const first = fake.streams.length;
    await kh.ready(100);
    await until("a stream", () => fake.streams.length > first);
    const s = latest();
    send(s, "id: ep-7\nevent: heartbeat\ndata: {}\n\n");
    await until("coherence", () => kh.coherent);
    s.res.end();
    await until("distrust", () => !kh.coherent, 1000);
    await until("reconnection", () => fake.streams.length > first + 1);
    assert.equal(latest().lastEventId, "ep-7");
  } finally {
    await kh.close();
  }
});

test("a silent stream is distrusted after half the coherence bound and reopened after twice it", async () => {
  const kh = client();
  try {
    const first = fake.streams.length;
    await kh.ready(50);
    await until("a stream", () => fake.streams.length > first);
    const s = latest();
    send(s, "id: q-1\nevent: heartbeat\ndata: {}\n\n");
    await fillCache(kh, s);
    const at = Date.now();
    await sleep(210);
    assert.equal(kh.coherent, false);
    const calls = fake.verifies;
    assert.equal((await kh.verify({ key: KEY })).cached, false);
    assert.equal(fake.verifies, calls + 1, "went to the server");
    await until("reconnection", () => fake.streams.length > first + 1, 3000);
    const waited = Date.now() - at;
    assert.ok(waited >= 600 && waited < 2500, `reconnected after ${waited} ms (expected ~800 + 100)`);
    assert.equal(latest().lastEventId, "q-1");
  } finally {
    await kh.close();
  }
});

test("close() ends the stream and the cache is not trusted afterwards", async () => {
  const kh = client();
  const first = fake.streams.length;
  await kh.verify({ key: KEY });
  await until("a stream", () => fake.streams.length > first);
  const s = latest();
  send(s, "event: heartbeat\ndata: {}\n\n");
  await until("coherence", () => kh.coherent);
  const closed = new Promise((r) => s.res.on("close", r));
  await kh.close();
  await closed;
  assert.equal(kh.coherent, false);
  assert.equal((await kh.verify({ key: KEY })).cached, false);
  await sleep(50);
  assert.equal(fake.streams.length, first + 1, "no new stream after close");
});

test("network errors are retried (bounded); HTTP answers never are", async () => {
  let calls = 0;
  const failing = async () => {
    calls++;
    throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
  };
  const kh = new Keyhaven({ baseUrl: base, rootKey: ROOT, retries: 2, fetch: failing });
  await assert.rejects(kh.verify({ key: KEY }), (e) => e instanceof KeyhavenError && e.code === "unreachable" && e.status === undefined && e.unavailable);
  assert.equal(calls, 3);

  calls = 0;
  const flaky = async (url, init) => {
    calls++;
    if (calls < 3) throw new TypeError("fetch failed");
    return fetch(url, init);
  };
  const ok = new Keyhaven({ baseUrl: base, rootKey: ROOT, fetch: flaky });
  assert.equal((await ok.verify({ key: KEY })).valid, true);
  assert.equal(calls, 3);

  calls = 0;
  const error500 = async () => {
    calls++;
    return new Response(JSON.stringify({ type: "x", title: "Internal Server Error", status: 500, code: "internal", detail: "boom" }), { status: 500 });
  };
  const no = new Keyhaven({ baseUrl: base, rootKey: ROOT, fetch: error500 });
  await assert.rejects(no.verify({ key: KEY }), (e) => e.status === 500 && e.code === "internal" && e.unavailable);
  assert.equal(calls, 1);
});

test("a POST the server would apply twice is sent again only when no connection was made", async () => {
  let calls = 0;
  const reset = async () => {
    calls++;
    throw new TypeError("fetch failed", { cause: Object.assign(new Error("socket hang up"), { code: "ECONNRESET" }) });
  };
  const kh = new Keyhaven({ baseUrl: base, rootKey: ROOT, retries: 3, fetch: reset });
  await assert.rejects(kh.request("POST", "/v1/root-keys", { scopes: ["keys:read"] }), (e) => e.code === "unreachable");
  assert.equal(calls, 1, "a second root key could be made unseen");
  await assert.rejects(kh.keyspaces.create({ name: "x", prefix: "x" }), (e) => e.code === "unreachable");
  assert.equal(calls, 1 + 4, "a deduplicated create is sent again");

  calls = 0;
  const refused = async () => {
    calls++;
    throw new TypeError("fetch failed", { cause: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" }) });
  };
  const nothingSent = new Keyhaven({ baseUrl: base, rootKey: ROOT, retries: 3, fetch: refused });
  await assert.rejects(nothingSent.request("POST", "/v1/root-keys", { scopes: ["keys:read"] }));
  assert.equal(calls, 4, "nothing was sent: tried again");
});

test("a server that does not answer in time is a timeout, retried then reported", async () => {
  const hang = createServer(() => {});
  const hangUrl = await listen(hang);
  try {
    const kh = new Keyhaven({ baseUrl: hangUrl, rootKey: ROOT, timeoutMs: 100, retries: 1 });
    const t0 = Date.now();
    await assert.rejects(kh.verify({ key: KEY }), (e) => e.code === "timeout" && e.status === undefined);
    assert.ok(Date.now() - t0 >= 200, "two attempts of 100 ms");
  } finally {
    hang.closeAllConnections();
    hang.close();
  }
});

test("no error, client or inspect output holds the key or the root key", async () => {
  const texts = [];
  const collect = (e) => texts.push(e.message, e.stack, inspect(e), JSON.stringify(e), String(e));
  // The server echoes both secrets into its problem.
  const kh = new Keyhaven({ baseUrl: base, rootKey: ROOT });
  await kh.request("POST", "/v1/echo", { key: KEY }).catch(collect);
  await kh.verify({ key: KEY }).then(() => undefined);
  // A wrong root key (401), an unreachable server, a timeout.
  const wrong = new Keyhaven({ baseUrl: base, rootKey: generateKey("kh_root") });
  await wrong.verify({ key: KEY }).catch(collect);
  const nowhere = new Keyhaven({ baseUrl: "http://127.0.0.1:1", rootKey: ROOT, retries: 0 });
  await nowhere.verify({ key: KEY }).catch(collect);
  texts.push(inspect(kh), JSON.stringify(kh), String(kh), inspect(kh, { showHidden: true, depth: 10 }));
  assert.equal(texts.length, 3 * 5 + 4);
  assert.ok(texts.some((t) => t.includes("validation_failed")));
  assert.ok(texts.some((t) => t.includes("unauthorized")));
  assert.ok(texts.some((t) => t.includes("unreachable")));
  for (const t of texts) {
    assert.ok(!t.includes(KEY), `key in: ${t}`);
    assert.ok(!t.includes(ROOT), `root key in: ${t}`);
  }
  assert.ok(texts[0].includes("<redacted>"));
});
