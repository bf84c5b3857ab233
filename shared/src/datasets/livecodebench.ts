import { inflateSync } from "node:zlib";
import type { CallCase, CanonicalRow, StdioCase, TestSpec } from "./canonical-row.js";
import { RowFields, describe } from "./row-fields.js";

/**
 * LiveCodeBench row (`question_id`, `question_content`, optional `starter_code`,
 * `public_test_cases` / `private_test_cases`, `metadata.func_name` for functional tests).
 * Test case lists are a list, a JSON string, or (as released on the Hub for private tests)
 * base64(zlib(pickle(json string))). Each case is `{input, output, testtype: stdin|functional}`;
 * functional inputs hold one JSON value per line (the arguments), outputs one JSON value.
 */
export function fromLiveCodeBench(row: Record<string, unknown>, line: number, file?: string): CanonicalRow {
  const f = new RowFields(row, line, file);
  const taskId = f.id("question_id");
  const content = f.string("question_content");
  const starter = f.optionalString("starter_code");
  const raw: { input: string; output: string; testtype: string; field: string }[] = [];
  for (const field of ["public_test_cases", "private_test_cases"]) {
    if (!f.has(field)) continue;
    const list = decodeCases(f, field);
    list.forEach((c, i) => {
      const where = `${field}[${i}]`;
      if (typeof c !== "object" || c === null || Array.isArray(c)) f.fail(where, `expected an object, got ${describe(c)}`);
      const o = c as Record<string, unknown>;
      for (const k of ["input", "output"]) if (typeof o[k] !== "string") f.fail(`${where}.${k}`, `expected a string, got ${describe(o[k])}`);
      const testtype = o.testtype ?? "stdin";
      if (testtype !== "stdin" && testtype !== "functional") return f.fail(`${where}.testtype`, `expected "stdin" or "functional", got ${describe(testtype)}`);
      raw.push({ input: o.input as string, output: o.output as string, testtype, field: where });
    });
  }
  if (raw.length === 0) f.fail("public_test_cases", "no test cases (public_test_cases and private_test_cases empty or missing)");
  const kinds = new Set(raw.map((c) => c.testtype));
  if (kinds.size > 1) f.fail("public_test_cases", "mixes stdin and functional test cases");
  let tests: TestSpec;
  if (kinds.has("functional")) {
    const fn = funcName(f);
    const cases: CallCase[] = raw.map((c) => ({
      args: c.input.split("\n").filter((s) => s.trim() !== "").map((s, j) => parseJson(f, `${c.field}.input (line ${j + 1})`, s)),
      expected: parseJson(f, `${c.field}.output`, c.output),
    }));
    tests = { kind: "call", fn, cases };
  } else {
    const cases: StdioCase[] = raw.map((c) => ({ input: c.input, output: c.output }));
    tests = { kind: "stdio", cases };
  }
  const prompt = starter ? `${content}\n\n${starter}` : content;
  return { task_id: taskId, prompt, tests, source: "lcb" };
}

function funcName(f: RowFields): string {
  let meta = f.row.metadata;
  if (typeof meta === "string") meta = parseJson(f, "metadata", meta);
  const name = typeof meta === "object" && meta !== null ? (meta as Record<string, unknown>).func_name : undefined;
  if (typeof name !== "string" || name === "") f.fail("metadata.func_name", "is required for functional test cases");
  return name;
}

function parseJson(f: RowFields, field: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    return f.fail(field, `invalid JSON: ${(err as Error).message}`);
  }
}

function decodeCases(f: RowFields, field: string): unknown[] {
  const v = f.row[field];
  if (Array.isArray(v)) return v;
  if (typeof v !== "string") f.fail(field, `expected a list or a string, got ${describe(v)}`);
  if (v.trim() === "") return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(v);
  } catch {
    try {
      parsed = JSON.parse(unpickleString(inflateSync(Buffer.from(v, "base64"))));
    } catch (err) {
      f.fail(field, `neither JSON nor base64(zlib(pickle(JSON))): ${(err as Error).message}`);
    }
  }
  if (!Array.isArray(parsed)) f.fail(field, `expected a list of test cases, got ${describe(parsed)}`);
  return parsed;
}

/** Reads a pickle that holds one str (all LiveCodeBench uses); anything else is an error. */
export function unpickleString(buf: Buffer): string {
  let i = 0;
  let value: string | undefined;
  while (i < buf.length) {
    const op = buf[i++];
    switch (op) {
      case 0x80: i += 1; break; // PROTO
      case 0x95: i += 8; break; // FRAME
      case 0x94: break; // MEMOIZE
      case 0x8c: { const n = buf.readUInt8(i); i += 1; value = buf.toString("utf8", i, i + n); i += n; break; }
      case 0x58: { const n = buf.readUInt32LE(i); i += 4; value = buf.toString("utf8", i, i + n); i += n; break; }
      case 0x8d: { const n = Number(buf.readBigUInt64LE(i)); i += 8; value = buf.toString("utf8", i, i + n); i += n; break; }
      case 0x2e: // STOP
        if (value === undefined) throw new Error("pickle holds no string");
        return value;
      default:
        throw new Error(`unsupported pickle opcode 0x${(op ?? 0).toString(16)}`);
    }
  }
  throw new Error("truncated pickle");
}
