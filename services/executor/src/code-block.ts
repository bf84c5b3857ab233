// The executor's view of a response's program; the rule itself lives in shared/src/reward/program.ts.
import { extractLastCodeBlock } from "@rlmesh/shared/reward/program";

export { codeBlocks, definesName, entryPoints, extractLastCodeBlock, selectProgram } from "@rlmesh/shared/reward/program";

/**
 * Wraps a reference program as a model response (what `--solutions canonical` feeds in). A
 * reference that already is a response with a fenced block (rlmesh's toy suite) is kept as is.
 */
export function asResponse(program: string): string {
  if (extractLastCodeBlock(program) !== null) return program;
  return "```python\n" + program.replace(/\s+$/, "") + "\n```\n";
}
