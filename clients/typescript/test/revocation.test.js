// A key revoked through the API is refused by the cached client within 1 s: 100 trials.
import assert from "node:assert/strict";
import { test } from "node:test";

import { Keyhaven } from "../dist/index.js";
import { admin, freshKeyspace, needsServer, percentile, rootKey, sleep, url } from "./helpers.js";

const TRIALS = 100;
// Between two polls the event loop turns once, as it does between two requests of a server.
const turn = () => new Promise((r) => setImmediate(r));

test(`a revoked key is refused by the cached client within 1 s (${TRIALS} trials)`, { skip: needsServer }, async () => {
  const kh = admin();
  const cached = new Keyhaven({ baseUrl: url, rootKey, cache: true });
  try {
    assert.ok(await cached.ready(), "the change stream spoke");
    const ks = await freshKeyspace(kh, "rev");
    const times = [];
    let cachedAnswers = 0;
    for (let trial = 0; trial < TRIALS; trial++) {
      const k = await kh.keys.create({ keyspace_id: ks.id });
      let answer;
      for (let i = 0; i < 400; i++) {
        answer = await cached.verify({ key: k.key });
        if (answer.cached) break;
        await sleep(2);
      }
      assert.equal(answer.code, "VALID");
      assert.ok(answer.cached, `trial ${trial}: the answer was never cached`);
      cachedAnswers++;
      const start = performance.now();
      await kh.keys.revoke(k.key_id);
      let polls = 0;
      for (;;) {
        answer = await cached.verify({ key: k.key });
        polls++;
        if (!answer.valid) break;
        if (performance.now() - start > 2_000) break;
        await turn();
      }
      const ms = performance.now() - start;
      assert.equal(answer.code, "REVOKED", `trial ${trial}: still ${answer.code} after ${ms.toFixed(1)} ms`);
      assert.ok(ms < 1_000, `trial ${trial}: refused after ${ms.toFixed(1)} ms`);
      times.push(ms);
    }
    times.sort((a, b) => a - b);
    const f = (x) => `${x.toFixed(1)} ms`;
    console.log(
      `revocation seen by the cached client (${TRIALS} trials, from the revoke call): ` +
        `p50 ${f(percentile(times, 0.5))}, p99 ${f(percentile(times, 0.99))}, max ${f(times[times.length - 1])}`,
    );
    assert.equal(cachedAnswers, TRIALS);
  } finally {
    await cached.close();
  }
});
