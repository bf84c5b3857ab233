// The program in a model response: which fenced block is the candidate's solution. One rule for
// the reward path (executor) and the host-side checks (rollout's python check, train-base eval).
import type { TestSpec } from "../datasets/index.js";

/**
 * The bodies of a response's closed fenced code blocks (``` or ~~~, any info string), in order,
 * empty ones left out. A fence left open at the end does not count: a truncated generation is a
 * format error, not a program.
 */
export function codeBlocks(response: string): string[] {
  const lines = response.split(/\r?\n/);
  const blocks: string[] = [];
  let open: { fence: string; body: string[] } | null = null;
  for (const line of lines) {
    if (open === null) {
      const m = /^ {0,3}(`{3,}|~{3,})\s*([\w+.#-]*)[^`]*$/.exec(line);
      if (m) open = { fence: m[1]!, body: [] };
    } else {
      const close = new RegExp(`^ {0,3}${open.fence[0] === "`" ? "`" : "~"}{${open.fence.length},}\\s*$`);
      if (close.test(line)) {
        const body = open.body.join("\n");
        if (body.trim() !== "") blocks.push(body);
        open = null;
      } else {
        open.body.push(line);
      }
    }
  }
  return blocks;
}

/** The body of the response's last closed fenced code block, or null when there is none. */
export function extractLastCodeBlock(response: string): string | null {
  return codeBlocks(response).at(-1) ?? null;
}

/** True when `code` defines `name` at its top level (def, async def, class, or an assignment). */
export function definesName(code: string, name: string): boolean {
  let re = DEFINES.get(name);
  if (!re) {
    const n = name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    re = new RegExp(`^(?:(?:async\\s+)?def\\s+${n}\\s*\\(|class\\s+${n}\\b|${n}\\s*(?::[^=]*)?=(?!=))`, "m");
    // Entry-point names repeat across a dataset's candidates: compiling the pattern per call was
    // ~50 µs of the executor's CPU per candidate. Bounded: a stream of new names cannot grow it.
    if (DEFINES.size >= 4096) DEFINES.clear();
    DEFINES.set(name, re);
  }
  return re.test(code);
}
const DEFINES = new Map<string, RegExp>();

// Names a test calls that are not the task's entry point.
const NOT_ENTRY_POINTS = new Set(
  ("assert abs all any bool dict divmod enumerate filter float frozenset hash int isinstance iter len list map max min " +
    "next pow print range repr reversed round set sorted str sum tuple type zip check candidate math").split(" "),
);

/**
 * The names a task's tests call the candidate by: HumanEval's entry_point, call-style `fn`, or
 * for plain asserts (MBPP) the functions the asserts call. Empty for stdin/stdout tasks.
 */
export function entryPoints(tests: TestSpec): string[] {
  if (tests.kind === "call") return [tests.fn];
  if (tests.kind !== "assert") return [];
  if (tests.entry_point) return [tests.entry_point];
  const names = new Set<string>();
  for (const t of tests.tests) {
    for (const m of t.matchAll(/(?<![\w.])([A-Za-z_]\w*)\s*\(/g)) if (!NOT_ENTRY_POINTS.has(m[1]!)) names.add(m[1]!);
  }
  return [...names];
}

/**
 * The program in a model response: the last fenced block that defines the task's entry point
 * (a response may show its solution, then a usage example or its own tests in later blocks),
 * or the last block when no block defines it or the task has no entry point (stdin/stdout).
 * Null when the response has no closed block.
 */
export function selectProgram(response: string, names: readonly string[]): string | null {
  const blocks = codeBlocks(response);
  if (blocks.length === 0) return null;
  if (names.length > 0) {
    for (let i = blocks.length - 1; i >= 0; i--) if (names.some((n) => definesName(blocks[i]!, n))) return blocks[i]!;
  }
  return blocks.at(-1)!;
}
