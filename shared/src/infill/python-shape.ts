/**
 * A cheap, conservative check that a Python program is not visibly malformed, for ranking
 * infilling candidates (services/rollout, "Length search"): it never runs or imports anything and
 * never decides a reward (the sandbox does). It reads the code of the first ```python fenced block
 * (else the whole text) and rejects only what Python would reject:
 *  - brackets that do not pair, strings that do not end;
 *  - indentation: a line after one ending in ':' must be indented deeper, any other line must
 *    return to an enclosing level (lines inside brackets, after a backslash or inside a triple-quoted
 *    string are continuations);
 *    a block header may not end the program;
 *  - token pairs no expression allows: two operands side by side (`x 14`, `) y`; adjacent string
 *    literals concatenate and are allowed), a keyword twice (`in in`, `else else`; `not not` is
 *    allowed), a binary operator followed by a binary operator or a closing bracket, ',' or ':' or
 *    the end of the line (`* *`, `x + )`), an opening bracket or ',' followed by a binary operator
 *    or ','.
 * Anything it cannot judge passes: it may let a malformed program through, never the reverse
 * for the constructs above (tested against CPython's compile() on the toy suite's programs).
 */

const KEYWORDS = new Set(
  "False None True and as assert async await break class continue def del elif else except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield".split(" "),
);
const SOFT_KEYWORDS = new Set(["match", "case", "type"]);
const VALUE_KEYWORDS = new Set(["True", "False", "None"]);
const BINARY = new Set(["+", "-", "*", "/", "//", "%", "**", "==", "!=", "<", ">", "<=", ">=", "@", "&", "|", "^", "<<", ">>", "and", "or", "in", "is"]);
const ASSIGN = new Set(["=", "+=", "-=", "*=", "/=", "//=", "%=", "**=", "&=", "|=", "^=", ">>=", "<<=", ":=", "@="]);
/** May start an operand after a binary operator (unary operators, `not`). */
const UNARY = new Set(["+", "-", "~", "not"]);
/** May start an operand after an opening bracket or ',' (unary operators, star-unpacking). */
const PREFIX = new Set([...UNARY, "*", "**"]);
const OPEN: Record<string, string> = { "(": ")", "[": "]", "{": "}" };
const CLOSE = new Set([")", "]", "}"]);

type Kind = "name" | "kw" | "num" | "str" | "op" | "nl" | "bad";
interface Tok {
  kind: Kind;
  text: string;
}

const TOKEN_RE =
  /([ \t\f]+|\\\n)|(\n)|(#[^\n]*)|([rRbBuUfF]{0,2}(?:'''[\s\S]*?'''|"""[\s\S]*?"""|'(?:\\[\s\S]|[^'\\\n])*'|"(?:\\[\s\S]|[^"\\\n])*"))|(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|\d[\d_]*(?:\.[\d_]*)?(?:[eE][+-]?\d+)?[jJ]?|\.\d[\d_]*(?:[eE][+-]?\d+)?[jJ]?)|([\p{L}\p{Nl}_][\p{L}\p{Nl}\p{Mn}\p{Mc}\p{Nd}\p{Pc}]*)|(\*\*=|\/\/=|>>=|<<=|\*\*|\/\/|==|!=|<=|>=|<<|>>|->|:=|[-+*/%@&|^]=|[-+*/%@&|^~<>=.,:;()[\]{}])|([\s\S])/gu;

/** The code to check: the first ```python (or bare ```) fenced block, else the whole text. */
export function pythonCodeOf(text: string): string {
  const m = /```(?:python|py)?[ \t]*\n([\s\S]*?)```/.exec(text);
  return m ? (m[1] as string) : text;
}

/**
 * Tokens; a newline is a token only where it ends a logical line (not inside brackets). null for
 * an unterminated string or brackets that do not pair.
 */
function tokenize(code: string): Tok[] | null {
  const out: Tok[] = [];
  const open: string[] = [];
  for (const m of code.matchAll(TOKEN_RE)) {
    if (m[1] !== undefined || m[3] !== undefined) continue;
    if (m[2] !== undefined) {
      if (open.length === 0) out.push({ kind: "nl", text: "\n" });
      continue;
    }
    if (m[7] !== undefined) {
      if (OPEN[m[7]] !== undefined) open.push(OPEN[m[7]] as string);
      else if (CLOSE.has(m[7]) && open.pop() !== m[7]) return null;
    }
    if (m[4] !== undefined) out.push({ kind: "str", text: m[4] });
    else if (m[5] !== undefined) out.push({ kind: "num", text: m[5] });
    else if (m[6] !== undefined) out.push({ kind: KEYWORDS.has(m[6]) ? "kw" : "name", text: m[6] });
    else if (m[7] !== undefined) out.push({ kind: "op", text: m[7] });
    else {
      const c = m[8] as string;
      // An unterminated string: a quote the string pattern could not close.
      if (c === "'" || c === '"') return null;
      if (c === "\r") continue;
      out.push({ kind: "bad", text: c });
    }
  }
  return open.length === 0 ? out : null;
}

function isOperand(t: Tok): boolean {
  return t.kind === "name" || t.kind === "num" || t.kind === "str" || (t.kind === "kw" && VALUE_KEYWORDS.has(t.text));
}

function isBinary(t: Tok): boolean {
  return (t.kind === "op" || t.kind === "kw") && (BINARY.has(t.text) || ASSIGN.has(t.text));
}

/** The indentation is consistent (continuation lines excepted). */
function checkIndentation(code: string): boolean {
  // Indentation: walk the physical lines, skipping those that continue a bracketed expression,
  // a backslash or a triple-quoted string (tracked by a small scan of each line).
  const levels = [0];
  let headerOpen = false;
  let depth = 0;
  let continued = false;
  let tripleQuote: string | null = null;
  for (const line of code.split("\n")) {
    const startsInside = depth > 0 || continued || tripleQuote !== null;
    const scan = scanLine(line, depth, tripleQuote);
    depth = scan.depth;
    tripleQuote = scan.tripleQuote;
    continued = scan.backslash;
    const stripped = line.trim();
    if (!startsInside) {
      if (stripped === "" || stripped.startsWith("#")) continue;
      const indent = line.length - line.replace(/^[ \t]+/, "").length;
      if (headerOpen) {
        if (indent <= (levels[levels.length - 1] as number)) return false;
        levels.push(indent);
      } else if (indent > (levels[levels.length - 1] as number)) {
        return false;
      } else {
        while (levels.length > 0 && indent < (levels[levels.length - 1] as number)) levels.pop();
        if (levels.length === 0 || indent !== levels[levels.length - 1]) return false;
      }
      headerOpen = false;
    }
    // A statement ends on this line: it opens a block when it ends in ':'.
    if (depth === 0 && !continued && tripleQuote === null && scan.code.trim() !== "") headerOpen = scan.code.trimEnd().endsWith(":");
  }
  return !headerOpen;
}

/** Bracket depth and open triple quote after `line`, its code without comments and strings, and a trailing backslash. */
function scanLine(line: string, depth: number, tripleQuote: string | null): { depth: number; tripleQuote: string | null; backslash: boolean; code: string } {
  let code = "";
  let i = 0;
  while (i < line.length) {
    if (tripleQuote !== null) {
      const end = line.indexOf(tripleQuote, i);
      if (end < 0) return { depth, tripleQuote, backslash: false, code };
      i = end + 3;
      tripleQuote = null;
      code += "''";
      continue;
    }
    const c = line[i] as string;
    if (c === "#") break;
    if (c === "'" || c === '"') {
      const q3 = line.startsWith(c.repeat(3), i) ? c.repeat(3) : null;
      if (q3) {
        tripleQuote = q3;
        i += 3;
        continue;
      }
      let j = i + 1;
      while (j < line.length && line[j] !== c) j += line[j] === "\\" ? 2 : 1;
      code += "''";
      i = j + 1;
      continue;
    }
    if (c === "(" || c === "[" || c === "{") depth++;
    else if (c === ")" || c === "]" || c === "}") depth = Math.max(0, depth - 1);
    code += c;
    i++;
  }
  return { depth, tripleQuote, backslash: tripleQuote === null && line.endsWith("\\"), code };
}

/** Token pairs that no Python expression or statement allows. */
/** A bare `*` or `/` in a parameter list (`def f(a, /, b, *, c)`, `lambda a, /: a`). */
function isParamMarker(toks: Tok[], i: number): boolean {
  const t = toks[i];
  const prev = toks[i - 1];
  const next = toks[i + 1];
  return (
    t !== undefined &&
    (t.text === "*" || t.text === "/") &&
    prev !== undefined &&
    (prev.text === "," || prev.text === "(" || prev.text === "lambda") &&
    next !== undefined &&
    (next.text === "," || next.text === ")" || next.text === ":")
  );
}

function checkPairs(toks: Tok[]): boolean {
  for (let i = 0; i + 1 < toks.length; i++) {
    const a = toks[i] as Tok;
    const b = toks[i + 1] as Tok;
    if (a.kind === "bad" || b.kind === "bad") return false;
    if (isParamMarker(toks, i) || isParamMarker(toks, i + 1)) continue;
    // Soft keywords open a statement at the start of a line (`match x:`, `case 1:`, `type T = int`).
    const soft = a.kind === "name" && SOFT_KEYWORDS.has(a.text) && (i === 0 || toks[i - 1]!.kind === "nl");
    if (isOperand(a) && isOperand(b) && !soft && !(a.kind === "str" && b.kind === "str")) return false;
    if (a.kind === "op" && CLOSE.has(a.text) && isOperand(b)) return false;
    if (a.kind === "kw" && b.kind === "kw" && a.text === b.text && a.text !== "not") return false;
    if (isBinary(a)) {
      // A unary operator may start the right operand (`is not` is one operator); star-unpacking
      // after an assignment or `in` (`x = *a, b`, `for x in *a, b:`).
      const bBinary = isBinary(b) || (b.kind === "kw" && b.text === "else");
      if (bBinary && !UNARY.has(b.text) && !((ASSIGN.has(a.text) || a.text === "in") && b.text === "*")) return false;
      if (b.kind === "nl" || (b.kind === "op" && (CLOSE.has(b.text) || b.text === "," || b.text === ":"))) return false;
    }
    // After an opening bracket or ',': no binary operator but a prefix (`(-x`, `[*a`), no ','.
    if (a.kind === "op" && (OPEN[a.text] !== undefined || a.text === ",") && ((isBinary(b) && !PREFIX.has(b.text)) || b.text === ",")) return false;
  }
  return true;
}

/**
 * false when the program (first ```python block, else the text) is visibly not valid Python;
 * true when nothing this check looks at is wrong (it is not a parser: see the file comment).
 */
export function pythonLooksWellFormed(text: string): boolean {
  const code = pythonCodeOf(text);
  const toks = tokenize(code);
  if (toks === null) return false;
  return checkIndentation(code) && checkPairs(toks);
}
