// The repository stands alone, its packages form a star (issue: a fresh clone stands on its
// own), and its source files have no load-time import cycles (issue 21). The checks read the
// working tree; each has a unit test that shows it can fail.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { MBPP_PATH, REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { findImportCycles, findOutsidePaths, importCyclesIn, outsidePathsIn, starViolations } from "./repo-scan.js";

test("the outside-path check flags relative paths that climb above the root", () => {
  // The bug this check exists for: a default path into a folder beside the checkout.
  // Built at run time so this file itself names no path outside the repository.
  const sibling = `${"../".repeat(4)}shared/data`;
  const hits = findOutsidePaths("services/executor/src/bench-command.ts", `return resolve(here, "${sibling}/mbpp-sanitized.jsonl");`);
  assert.equal(hits.length, 1);
  assert.equal(hits[0]?.line, 1);
  assert.equal(findOutsidePaths("services/api/src/x.ts", 'join(here, "..", "..", "..", "..")').length, 1);
  assert.equal(findOutsidePaths("deploy/sandbox/build-image.sh", 'ROOT="$(cd "$(dirname "$0")/../../.." && pwd)"').length, 1);
  assert.equal(findOutsidePaths("scripts/x.mjs", 'readFileSync("../a/../../b")').length, 1);
  // Climbs that stay inside are fine.
  assert.deepEqual(findOutsidePaths("services/executor/src/bench-command.ts", 'resolve(here, "../../../datasets/mbpp/x.jsonl")'), []);
  assert.deepEqual(findOutsidePaths("services/api/src/x.ts", 'join(here, "..", "..", "..")'), []);
  assert.deepEqual(findOutsidePaths("deploy/sandbox/build-image.sh", 'ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"'), []);
  assert.deepEqual(findOutsidePaths("scripts/x.mjs", 'import x from "../shared/dist/index.js"; const y = "a..b"; z = 1...2;'), []);
});

test("no source file, script or config refers to a path outside the repository", () => {
  const hits = outsidePathsIn(REPO_ROOT);
  assert.deepEqual(hits, [], `paths outside the repository root:\n${hits.map((h) => `  ${h.file}:${h.line}: ${h.text}`).join("\n")}`);
});

test("the data the product reads by default is inside the repository, with its license", () => {
  assert.ok(MBPP_PATH.startsWith(REPO_ROOT), MBPP_PATH);
  const rows = readFileSync(MBPP_PATH, "utf8").trim().split("\n");
  assert.equal(rows.length, 427);
  assert.ok(existsSync(join(REPO_ROOT, "datasets", "mbpp", "LICENSE")));
  assert.match(readFileSync(join(REPO_ROOT, "datasets", "mbpp", "README.md"), "utf8"), /CC-BY-4\.0/);
});

test("workspace packages form a star: services depend on shared only, the CLI composes them", () => {
  const bad = starViolations(REPO_ROOT);
  assert.deepEqual(bad, [], `dependencies that break the star:\n${bad.map((e) => `  ${e.from} -> ${e.to} (${e.where})`).join("\n")}`);
  const api = JSON.parse(readFileSync(join(REPO_ROOT, "services", "api", "package.json"), "utf8")) as { dependencies: Record<string, string> };
  assert.deepEqual(Object.keys(api.dependencies).filter((d) => d.startsWith("@rlmesh/")), ["@rlmesh/shared"]);
});

test("the import-cycle check finds a load-time cycle and ignores type-only and lazy imports", () => {
  const sources = new Map([
    ["p/src/a.ts", 'import { b } from "./b.js";\nexport const a = 1;'],
    ["p/src/b.ts", 'import {\n  c,\n} from "./sub/c.js";\nexport const b = c;'],
    ["p/src/sub/c.ts", 'export * from "../a.js";\nexport const c = 2;'],
    ["p/src/d.ts", 'import type { E } from "./e.js";\nexport const d = () => import("./e.js");'],
    ["p/src/e.ts", 'import { d } from "./d.js";\nexport type E = typeof d;'],
  ]);
  assert.deepEqual(findImportCycles(sources), [["p/src/a.ts", "p/src/b.ts", "p/src/sub/c.ts"]]);
});

test("no load-time import cycles between source files", () => {
  const cycles = importCyclesIn(REPO_ROOT);
  assert.deepEqual(cycles, [], `import cycles:\n${cycles.map((c) => `  ${c.join(" <-> ")}`).join("\n")}`);
});
