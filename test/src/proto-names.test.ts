// Every identifier in proto/ must be usable as-is from every client language: no message, enum,
// service, rpc, oneof, field or enum value is a keyword of Python, TypeScript/JavaScript, Go,
// Java or C++ (Python users had to write getattr(e, "from") for StateChanged.from).
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

const KEYWORDS: Record<string, string> = {
  python:
    "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield",
  typescript:
    "break case catch class const continue debugger default delete do else enum export extends false finally for function if import in instanceof new null return super switch this throw true try typeof var void while with yield let static implements interface package private protected public await",
  go: "break default func interface select case defer go map struct chan else goto package switch const fallthrough if range type continue for import return var",
  java: "abstract assert boolean break byte case catch char class const continue default do double else enum extends final finally float for goto if implements import instanceof int interface long native new package private protected public return short static strictfp super switch synchronized this throw throws transient try void volatile while true false null",
  cpp: "alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t char32_t class compl concept const consteval constexpr constinit const_cast continue co_await co_return co_yield decltype default delete do double dynamic_cast else enum explicit export extern false float for friend goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected public register reinterpret_cast requires return short signed sizeof static static_assert static_cast struct switch template this thread_local throw true try typedef typeid typename union unsigned using virtual void volatile wchar_t while xor xor_eq",
};

/** Identifiers declared in .proto text, with their line numbers (comments stripped). */
export function protoIdentifiers(text: string): { name: string; line: number }[] {
  const out: { name: string; line: number }[] = [];
  text.split("\n").forEach((raw, i) => {
    const l = raw.replace(/\/\/.*$/, "");
    for (const m of l.matchAll(/\b(?:message|enum|service|rpc|oneof)\s+(\w+)|(\w+)\s*=\s*\d+\s*[;[]/g)) out.push({ name: (m[1] ?? m[2])!, line: i + 1 });
  });
  return out;
}

function keywordClashes(text: string): string[] {
  return protoIdentifiers(text).flatMap(({ name, line }) => {
    const langs = Object.entries(KEYWORDS)
      .filter(([, words]) => words.split(" ").includes(name))
      .map(([lang]) => lang);
    return langs.length > 0 ? [`line ${line}: ${name} (${langs.join(", ")})`] : [];
  });
}

test("the keyword check sees fields, oneofs, enum values and messages", () => {
  const sample = "message StateChanged {\n  JobState from = 1; // was\n  oneof kind { AssertTests assert = 1; }\n}\nenum E { default = 0; }";
  assert.deepEqual(keywordClashes(sample), [
    "line 2: from (python)",
    "line 3: assert (python, java)",
    "line 5: default (typescript, go, java, cpp)",
  ]);
  assert.deepEqual(keywordClashes("message Ok { string from_state = 1; }"), []);
});

test("no identifier in proto/ is a keyword of Python, TypeScript, Go, Java or C++", () => {
  const dir = join(REPO_ROOT, "proto", "rlmesh", "v1");
  const files = readdirSync(dir).filter((f) => f.endsWith(".proto"));
  assert.ok(files.length >= 5, files.join(", "));
  const clashes = files.flatMap((f) => keywordClashes(readFileSync(join(dir, f), "utf8")).map((c) => `${f} ${c}`));
  assert.deepEqual(clashes, []);
});
