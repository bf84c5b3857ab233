#!/usr/bin/env node
// The `rlmesh` command. The TypeScript build must have run (`npm run setup`).
import { existsSync } from "node:fs";
const main = new URL("../dist/main.js", import.meta.url);
if (!existsSync(main)) {
  console.error("rlmesh is not built yet: run `npm run setup` (or `npm run build`) in the repository root first.");
  process.exit(2);
}
await import(main.href);
