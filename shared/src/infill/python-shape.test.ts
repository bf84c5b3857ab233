import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { REPO_ROOT } from "../repo-paths.js";
import { pythonCodeOf, pythonLooksWellFormed } from "./python-shape.js";

function jsonl(file: string): Array<Record<string, unknown>> {
  return readFileSync(join(REPO_ROOT, "datasets", file), "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test("every shipped reference solution (MBPP and the toy suite) passes the check", () => {
  const programs = [
    ...jsonl("mbpp/mbpp-sanitized.jsonl").map((r) => r["code"] as string),
    ...["toy/train.jsonl", "toy/test-instances.jsonl", "toy/test-compositional.jsonl"].flatMap((f) => jsonl(f).map((r) => r["reference"] as string)),
  ];
  assert.ok(programs.length > 5000, `read ${programs.length} programs`);
  const rejected = programs.filter((p) => !pythonLooksWellFormed(p));
  assert.deepEqual(rejected.slice(0, 3), [], `${rejected.length} valid programs rejected`);
});

const VALID = [
  "def f(a, *, b=1, **kw):\n    return [*a, *kw]\n",
  "x = y if a is not None else z\nprint(x not in y, not x)\n",
  "@decorator\ndef g():\n    '''doc (with [ odd ' brackets'''\n    return lambda *a: a\n",
  "if (a and\n        b):\n    pass\n",
  "d = {\n  'a': 1,\n  'b': [1,\n        2],\n}\n",
  "s = 'a' 'b'\nt = f'{x + 1} {{'\nu = x[1:][::2]\n",
  "total = 1 + \\\n    2\n",
  "match command:\n    case [x, *rest]:\n        pass\n    case _:\n        pass\n",
  "if x: y = 1\nelse: y = -1\n",
  "class A:\n    # comment (\n\n    def m(self):\n        return -self.x ** -2\n",
  "x = '''\nnot code: ( [ {\n   weird indent\n'''\ny = 1\n",
  "```python\ndef f(x):\n    return x\n```\n",
  "n = 0xFF + 0b1010 + 0o17 + 1_000_000 + 1.5e-3 + .5 + 2j\n",
  "def g(x: int = -1, *args, **kw) -> list[int]:\n    global y\n    if (n := len(args)) > 1 and not -x < -n:\n        return [-x for _ in args][-1:]\n    yield from {**kw}\n",
  "def p(a, /, b, *, c):\n    return lambda a, /, b: a\n\ndef q(a, /):\n    for x in *a, b:\n        pass\n",
  "π = 3.14\ncafé = 'a\\\nb'\nprint(π, café)\n",
  "async def h():\n    await g()\n    print(*h, sep='', end=\"\")\n    return lambda: -1\n",
];

test("valid Python constructs pass (as CPython's compile() agrees)", () => {
  for (const src of VALID) assert.equal(pythonLooksWellFormed(src), true, src);
  // The examples are valid Python: checked with CPython where python3 is installed (CI installs it).
  const py = spawnSync("python3", ["-c", "import json,sys\nfor s in json.load(sys.stdin): compile(s, 'x', 'exec')"], {
    input: JSON.stringify(VALID.map(pythonCodeOf)),
    encoding: "utf8",
  });
  assert.equal(py.status, 0, py.stderr);
});

const MALFORMED: Array<[string, string]> = [
  ["    return ( % % 7 - 6) % 6", "operator after operator"],
  ["    return x if x 14 else 14", "two operands"],
  ["    return x + 11 if x else else x", "keyword twice"],
  ["    return max([v for v in in xs if v > 1])", "in in"],
  ["print((x - 6) * * 2)", "* *"],
  ["print((x - 10 10) % 7)", "two numbers"],
  ["print((x) y)", "operand after a closing bracket"],
  ["print(x +)", "operator before a closing bracket"],
  ["print(x,\n", "unclosed bracket"],
  ["print(x))", "unpaired closing bracket"],
  ["s = 'abc\n", "unterminated string"],
  ["s = '''abc\n", "unterminated triple-quoted string"],
  ["def f(x):\nreturn x", "block not indented"],
  ["x = 1\n    y = 2", "unexpected indent"],
  ["def f(x):\n        a = 1\n    b = 2", "dedent to no enclosing level"],
  ["def f(x):", "header ends the program"],
  ["x = 1 +\n", "operator ends the line"],
  ["x = (, 1)", "operator after an opening bracket"],
  ["x = $", "character outside Python"],
];

test("malformed programs are rejected, each for its reason", () => {
  for (const [src, why] of MALFORMED) assert.equal(pythonLooksWellFormed(`def f(x):\n    pass\n${src}\n`), false, `${why}: ${src}`);
  // And CPython rejects them too.
  const accepted = spawnSync(
    "python3",
    [
      "-c",
      "import json,sys\nok=[]\nfor s in json.load(sys.stdin):\n    try:\n        compile(s,'x','exec'); ok.append(s)\n    except SyntaxError:\n        pass\nprint(json.dumps(ok))",
    ],
    { input: JSON.stringify(MALFORMED.map(([src]) => `def f(x):\n    pass\n${src}\n`)), encoding: "utf8" },
  );
  assert.equal(accepted.status, 0, accepted.stderr);
  assert.deepEqual(JSON.parse(accepted.stdout), [], "CPython compiles none of them");
});

test("the code is read from the first fenced block when there is one", () => {
  assert.equal(pythonCodeOf("text\n```python\nx = 1\n```\nmore ```"), "x = 1\n");
  assert.equal(pythonCodeOf("x = 1\n"), "x = 1\n");
  assert.equal(pythonLooksWellFormed("Here it is:\n```python\nx = (1\n```\n"), false);
});
