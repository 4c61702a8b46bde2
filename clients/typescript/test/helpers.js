// Shared by the suites that need a real Keyhaven (scripts/with-server.sh sets
// KEYHAVEN_URL and KEYHAVEN_ROOT_KEY). Without one they skip, except under CI=true,
// where a missing server is a failure.
import { randomBytes } from "node:crypto";

import { Keyhaven } from "../dist/index.js";

export const url = process.env.KEYHAVEN_URL;
export const rootKey = process.env.KEYHAVEN_ROOT_KEY;

if ((!url || !rootKey) && process.env.CI === "true") {
  throw new Error(
    "KEYHAVEN_URL and KEYHAVEN_ROOT_KEY are not set: run the suite through scripts/with-server.sh",
  );
}

/** `skip` option for tests that need the server: a reason, or false. */
export const needsServer =
  url && rootKey
    ? false
    : "no Keyhaven server (run: scripts/with-server.sh bash -c 'cd clients/typescript && npm test')";

/** A client without cache, for the tests' own admin calls. */
export function admin() {
  return new Keyhaven({ baseUrl: url, rootKey });
}

/** A prefix no other test uses: `base` and 6 random lowercase letters. */
export function uniquePrefix(base = "t") {
  const letters = [...randomBytes(6)].map((b) => String.fromCharCode(97 + (b % 26))).join("");
  return `${base}_${letters}`;
}

/** A fresh keyspace with a unique prefix. */
export async function freshKeyspace(kh, base = "t") {
  const prefix = uniquePrefix(base);
  return kh.keyspaces.create({ name: prefix, prefix });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Percentile `p` (0..1) of sorted `values`. */
export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
}

/** Listens on 127.0.0.1 on a free port; resolves to the base URL. */
export function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${server.address().port}`));
  });
}
