// Static checks of the repository's shape, run by repo-structure.test.ts:
//   - no source file, script or config climbs out of the repository root with a relative path;
//   - the workspace packages form a star: shared <- services <- cli (and test), and no service
//     imports another service;
//   - no two source files import each other at load time, directly or through others.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, posix } from "node:path";

/** Files whose paths are code or configuration (data, models and prose are not scanned). */
const SCANNED = /\.(ts|mts|js|mjs|cjs|sh|py|json|ya?ml|proto)$|(^|\/)(Dockerfile|run)$/;
// The check's own sources are left out: they hold examples of what it flags.
const NOT_SCANNED = /(^|\/)(node_modules|dist)\/|^package-lock\.json$|^datasets\/|^models\/|^test\/src\/repo-(scan|structure\.test)\.ts$/;

/** Tracked files (and untracked, not ignored ones) that the outside-path check reads. */
export function scannedFiles(root: string): string[] {
  const out = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8" });
  return [...new Set(out.split("\n"))].filter((f) => f && SCANNED.test(f) && !NOT_SCANNED.test(f)).sort();
}

export interface OutsidePath {
  file: string;
  line: number;
  text: string;
}

// A run of `..` segments: "../../x", "$(dirname "$0")/../..", "..\\..".
const UP_RUN = /(?<![\w.\\$-])\.\.(?:[/\\]\.\.)*(?=[/\\"'`\s),]|$)/g;
// Consecutive ".." arguments: join(here, "..", "..", "..").
const UP_ARGS = /(["'])\.\.\1(?:\s*,\s*(["'])\.\.\2)*/g;

/**
 * Every place in `text` (the contents of `file`, a path relative to the root) where a relative
 * path climbs above the repository root, counted from the file's own folder (how import.meta.url,
 * dirname "$0" and imports resolve). Compiled files sit at the depth of their sources, so the
 * check holds for dist/ too.
 */
export function findOutsidePaths(file: string, text: string): OutsidePath[] {
  const dir = dirname(file.replaceAll("\\", "/"));
  const depth = dir === "." ? 0 : dir.split("/").length;
  const hits: OutsidePath[] = [];
  text.split("\n").forEach((line, i) => {
    let worst = 0;
    for (const m of line.matchAll(UP_ARGS)) worst = Math.max(worst, (m[0].match(/\.\./g) ?? []).length);
    for (const m of line.matchAll(UP_RUN)) {
      // Normalise the whole literal the run starts ("../a/../../b" climbs 2, "../x/.." climbs 0).
      const rest = line.slice(m.index + m[0].length).match(/^[/\\][^"'`\s),]*/)?.[0] ?? "";
      const ups = posix.normalize((m[0] + rest).replaceAll("\\", "/")).split("/").filter((s) => s === "..").length;
      worst = Math.max(worst, ups);
    }
    if (worst > depth) hits.push({ file, line: i + 1, text: line.trim() });
  });
  return hits;
}

/** The outside-path check over the whole repository. */
export function outsidePathsIn(root: string): OutsidePath[] {
  return scannedFiles(root).flatMap((f) => findOutsidePaths(f, readFileSync(`${root}/${f}`, "utf8")));
}

export interface PackageEdge {
  from: string;
  to: string;
  where: string;
}

/** Which @rlmesh packages each package may depend on. */
export function allowedDeps(pkg: string): (dep: string) => boolean {
  if (pkg === "@rlmesh/shared") return () => false;
  if (pkg === "@rlmesh/cli") return (d) => d !== "@rlmesh/test" && d !== pkg;
  if (pkg === "@rlmesh/test") return (d) => d !== pkg;
  return (d) => d === "@rlmesh/shared"; // a service
}

/**
 * Dependencies between workspace packages that break the star, from package.json dependency
 * lists and from import specifiers in each package's sources (`@rlmesh/x...` and relative
 * imports that leave the package's folder).
 */
export function starViolations(root: string): PackageEdge[] {
  const rootPkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8")) as { workspaces: string[] };
  const bad: PackageEdge[] = [];
  const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8" }).split("\n");
  for (const ws of rootPkg.workspaces) {
    const pkg = JSON.parse(readFileSync(`${root}/${ws}/package.json`, "utf8")) as { name: string; dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
    const ok = allowedDeps(pkg.name);
    for (const dep of Object.keys({ ...pkg.dependencies, ...pkg.devDependencies })) {
      if (dep.startsWith("@rlmesh/") && !ok(dep)) bad.push({ from: pkg.name, to: dep, where: `${ws}/package.json` });
    }
    for (const f of files.filter((x) => x.startsWith(`${ws}/src/`) && /\.(ts|mts)$/.test(x))) {
      const text = readFileSync(`${root}/${f}`, "utf8");
      for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*)["']([^"']+)["']/g)) {
        const spec = m[1] ?? "";
        const dep = spec.match(/^(@rlmesh\/[^/]+)/)?.[1];
        if (dep && dep !== pkg.name && !ok(dep)) bad.push({ from: pkg.name, to: dep, where: f });
        if (spec.startsWith(".")) {
          const target = posix.normalize(posix.join(posix.dirname(f), spec));
          if (!target.startsWith(`${ws}/`)) bad.push({ from: pkg.name, to: target, where: f });
        }
      }
    }
  }
  return bad;
}

/**
 * Cycles of load-time imports between source files: each strongly connected group of two or more
 * files, from relative `import … from` / `export … from` specifiers that are not type-only
 * (`import type`, `export type`: erased by the compiler). Dynamic `import()` is lazy and left out.
 * `sources` maps a path relative to the root to its text.
 */
export function findImportCycles(sources: ReadonlyMap<string, string>): string[][] {
  const edges = new Map<string, string[]>();
  for (const [file, text] of sources) {
    const out: string[] = [];
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^;'"]*?\s+from\s+)?["'](\.[^"']+)["']/gm)) {
      if (m[1]) continue;
      const target = posix.normalize(posix.join(posix.dirname(file), m[2] ?? "")).replace(/\.js$/, ".ts");
      if (sources.has(target)) out.push(target);
    }
    edges.set(file, out);
  }
  // Tarjan's strongly connected components.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const group: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        group.push(w);
      } while (w !== v);
      if (group.length > 1) cycles.push(group.sort());
    }
  };
  for (const v of edges.keys()) if (!index.has(v)) visit(v);
  return cycles;
}

/** Load-time import cycles among the TypeScript sources of every workspace package. */
export function importCyclesIn(root: string): string[][] {
  const rootPkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8")) as { workspaces: string[] };
  const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard"], { cwd: root, encoding: "utf8" }).split("\n");
  const sources = new Map<string, string>();
  for (const ws of rootPkg.workspaces) {
    for (const f of files.filter((x) => x.startsWith(`${ws}/src/`) && x.endsWith(".ts") && !x.endsWith(".d.ts"))) {
      sources.set(f, readFileSync(`${root}/${f}`, "utf8"));
    }
  }
  return findImportCycles(sources);
}
