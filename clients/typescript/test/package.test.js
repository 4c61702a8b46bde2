// What `npm pack` ships: the built code with its declarations, the README and both
// licences; no sources, tests or benchmarks.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";

import { needsServer } from "./helpers.js";

const dir = new URL("..", import.meta.url);

test("npm pack ships dist, README and both licences, nothing else", () => {
  const out = execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], {
    cwd: dir,
    encoding: "utf8",
  });
  const [pack] = JSON.parse(out);
  const files = pack.files.map((f) => f.path).sort();
  for (const f of ["dist/index.js", "dist/index.d.ts", "dist/client.js", "dist/middleware.d.ts", "README.md", "LICENSE-MIT", "LICENSE-APACHE", "package.json"]) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  for (const f of files) {
    assert.ok(/^(dist\/[a-z]+\.(js|d\.ts)|README\.md|LICENSE-(MIT|APACHE)|package\.json)$/.test(f), `unexpected ${f}`);
  }
  assert.equal(pack.name, "keyhaven");
});

test("the package has no runtime dependencies and licences that match the repository's", () => {
  const pkg = JSON.parse(readFileSync(new URL("package.json", dir), "utf8"));
  assert.equal(pkg.dependencies, undefined);
  assert.equal(pkg.type, "module");
  for (const name of ["LICENSE-MIT", "LICENSE-APACHE"]) {
    assert.equal(readFileSync(new URL(name, dir), "utf8"), readFileSync(new URL(`../../${name}`, dir), "utf8"));
  }
});

// Installed the way its users install it: `npm pack`, then `npm install <tarball>` in a
// new project, which imports "keyhaven" by name and verifies a key against the server.
test("installed from its tarball into a new project, it verifies a key", { skip: needsServer }, () => {
  const work = mkdtempSync(join(tmpdir(), "keyhaven-npm-"));
  try {
    const [pack] = JSON.parse(
      execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", work], {
        cwd: dir,
        encoding: "utf8",
      }),
    );
    const app = join(work, "app");
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    execFileSync("npm", ["install", "--no-audit", "--no-fund", "--offline", join(work, pack.filename)], {
      cwd: app,
      encoding: "utf8",
    });
    writeFileSync(
      join(app, "main.js"),
      `import keyhaven, { Keyhaven, parseKey } from "keyhaven";
const kh = new Keyhaven({ baseUrl: process.env.KEYHAVEN_URL, rootKey: process.env.KEYHAVEN_ROOT_KEY });
const prefix = "npm_" + Math.random().toString(36).slice(2, 8).replace(/[^a-z]/g, "x");
const ks = await kh.keyspaces.create({ name: prefix, prefix });
const { key, key_id } = await kh.keys.create({ keyspace_id: ks.id });
const good = await kh.verify({ key });
const bad = await kh.verify({ key: key.slice(0, -1) + (key.endsWith("a") ? "b" : "a") });
console.log(JSON.stringify({ keyId: key_id, valid: good.valid, answered: good.keyId, bad: bad.valid,
  parsed: parseKey(key).keyId, middleware: typeof keyhaven.express }));
`,
    );
    const out = JSON.parse(execFileSync("node", ["main.js"], { cwd: app, encoding: "utf8", env: process.env }));
    assert.equal(out.valid, true);
    assert.equal(out.answered, out.keyId);
    assert.equal(out.parsed, out.keyId);
    assert.equal(out.bad, false);
    assert.equal(out.middleware, "function");
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
