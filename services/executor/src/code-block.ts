/**
 * The program in a model response: the body of its last fenced code block (``` or ~~~, any
 * info string). A fence left open at the end of the response does not count: a truncated
 * generation is a format error, not a program. Returns null when there is no closed block.
 */
export function extractLastCodeBlock(response: string): string | null {
  const lines = response.split(/\r?\n/);
  let last: string | null = null;
  let open: { fence: string; body: string[] } | null = null;
  for (const line of lines) {
    if (open === null) {
      const m = /^ {0,3}(`{3,}|~{3,})\s*([\w+.#-]*)[^`]*$/.exec(line);
      if (m) open = { fence: m[1]!, body: [] };
    } else {
      const close = new RegExp(`^ {0,3}${open.fence[0] === "`" ? "`" : "~"}{${open.fence.length},}\\s*$`);
      if (close.test(line)) {
        last = open.body.join("\n");
        open = null;
      } else {
        open.body.push(line);
      }
    }
  }
  if (last === null || last.trim() === "") return null;
  return last;
}

/**
 * Wraps a reference program as a model response (what `--solutions canonical` feeds in). A
 * reference that already is a response with a fenced block (rlmesh's toy suite) is kept as is.
 */
export function asResponse(program: string): string {
  if (extractLastCodeBlock(program) !== null) return program;
  return "```python\n" + program.replace(/\s+$/, "") + "\n```\n";
}
