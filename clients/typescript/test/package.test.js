// What `npm pack` ships: the built code with its declarations, the README and both
// licences; no sources, tests or benchmarks.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";

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
