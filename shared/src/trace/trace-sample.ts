/**
 * A decode trace of one sample: its response tokens and, per response position, the 1-based
 * denoising step that committed it (rollout.proto Sample.commit_steps, jobs.proto TracedSample).
 * The order statistic and the checks every consumer (coordinator, CLI, console) shares.
 */

export interface TraceSample {
  /** Prompt id (dataset task id) or any label. */
  promptId: string;
  promptText: string;
  /** Decoded text of each response token (same length as commitSteps). */
  tokenTexts: string[];
  /** Token ids, when known (same length as tokenTexts). */
  tokenIds?: number[];
  /** Per response position: the 1-based step that committed its token. */
  commitSteps: number[];
  /** The RL step of the job that produced it (absent for a one-off decode). */
  step?: number;
  reward?: number;
  policyVersion?: number;
  /** Forward passes the sample took. */
  nfe?: number;
  /** orderCorrelation(commitSteps), filled in by normalizeTraces when absent. */
  orderCorrelation?: number;
}

/** A malformed trace; `field` is the path of the offending value (e.g. `samples[1].commit_steps`). */
export class TraceFormatError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
    this.name = "TraceFormatError";
  }
}

/**
 * Pearson correlation of response position (0, 1, ...) and commit step: 1 = strictly left to
 * right, near 0 = no positional order (e.g. sketch-first: ends and structure before the middle),
 * negative = right to left. 0 when it is undefined (fewer than two tokens, or every token
 * committed at the same step).
 */
export function orderCorrelation(commitSteps: ArrayLike<number>): number {
  const n = commitSteps.length;
  if (n < 2) return 0;
  const meanX = (n - 1) / 2;
  let meanY = 0;
  for (let i = 0; i < n; i++) meanY += commitSteps[i] as number;
  meanY /= n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    const dx = i - meanX;
    const dy = (commitSteps[i] as number) - meanY;
    sxy += dx * dy;
    sxx += dx * dx;
    syy += dy * dy;
  }
  if (syy === 0) return 0;
  return sxy / Math.sqrt(sxx * syy);
}

/** Thresholds of orderLabel, named so the page, the CLI and the docs agree. */
export const LEFT_TO_RIGHT_MIN = 0.9;
export const INTERLEAVED_MIN = 0.5;

/** A word for a correlation: left-to-right (>= 0.9), interleaved (>= 0.5), sketch-first (below). */
export function orderLabel(r: number): "left-to-right" | "interleaved" | "sketch-first" {
  if (r >= LEFT_TO_RIGHT_MIN) return "left-to-right";
  if (r >= INTERLEAVED_MIN) return "interleaved";
  return "sketch-first";
}

/** The number of steps the trace spans (its largest commit step). */
export function traceSteps(s: Pick<TraceSample, "commitSteps">): number {
  let m = 0;
  for (const c of s.commitSteps) if (c > m) m = c;
  return m;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Reads a field under its snake_case or camelCase name. */
function pick(o: Record<string, unknown>, snake: string): unknown {
  if (snake in o) return o[snake];
  const camel = snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
  return o[camel];
}

function optNumber(o: Record<string, unknown>, snake: string, path: string): number | undefined {
  const v = pick(o, snake);
  if (v === undefined || v === null) return undefined;
  const n = typeof v === "string" && /^-?\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isFinite(n)) throw new TraceFormatError(`${path}.${snake}`, `must be a finite number, got ${JSON.stringify(v)}`);
  return n;
}

/**
 * Checks and normalizes trace samples from JSON (a GetJobTracesResponse `{samples: [...]}`, or an
 * array of samples; snake_case or camelCase fields). Every sample needs `token_texts` (strings)
 * and `commit_steps` (integers >= 1) of the same non-zero length; `token_ids`, when given, the
 * same length too. Throws TraceFormatError naming the field.
 */
export function normalizeTraces(input: unknown): TraceSample[] {
  let list: unknown = input;
  let base = "samples";
  if (isRecord(input)) list = input.samples;
  else if (Array.isArray(input)) base = "traces";
  if (!Array.isArray(list)) {
    throw new TraceFormatError("samples", `expected an array of traced samples (or {"samples": [...]}), got ${describe(isRecord(input) ? input.samples : input)}`);
  }
  if (list.length === 0) throw new TraceFormatError(base, "no traced samples");
  return list.map((raw, i) => {
    const path = `${base}[${i}]`;
    if (!isRecord(raw)) throw new TraceFormatError(path, `must be an object, got ${describe(raw)}`);
    const texts = pick(raw, "token_texts");
    if (!Array.isArray(texts) || texts.some((t) => typeof t !== "string")) {
      throw new TraceFormatError(`${path}.token_texts`, `must be an array of strings, got ${describe(texts)}`);
    }
    const steps = pick(raw, "commit_steps");
    if (!Array.isArray(steps) || steps.some((c) => typeof c !== "number" || !Number.isInteger(c) || c < 1)) {
      throw new TraceFormatError(`${path}.commit_steps`, `must be an array of integers >= 1 (1-based steps), got ${describe(steps)}`);
    }
    if (steps.length !== texts.length) {
      throw new TraceFormatError(`${path}.commit_steps`, `has ${steps.length} entries but token_texts has ${texts.length}; there must be one per response token`);
    }
    if (steps.length === 0) throw new TraceFormatError(`${path}.commit_steps`, "is empty: the sample has no response tokens");
    const ids = pick(raw, "token_ids");
    if (ids !== undefined && ids !== null && (!Array.isArray(ids) || (ids.length > 0 && ids.length !== texts.length) || ids.some((t) => !Number.isInteger(t)))) {
      throw new TraceFormatError(`${path}.token_ids`, `must be an array of ${texts.length} integers (one per token text), got ${describe(ids)}`);
    }
    const promptId = pick(raw, "prompt_id");
    const promptText = pick(raw, "prompt_text");
    if (promptId !== undefined && typeof promptId !== "string") throw new TraceFormatError(`${path}.prompt_id`, `must be a string, got ${describe(promptId)}`);
    if (promptText !== undefined && typeof promptText !== "string") throw new TraceFormatError(`${path}.prompt_text`, `must be a string, got ${describe(promptText)}`);
    const commitSteps = steps as number[];
    const nfe = optNumber(raw, "nfe", path);
    if (nfe !== undefined && nfe > 0 && traceSteps({ commitSteps }) > nfe) {
      throw new TraceFormatError(`${path}.commit_steps`, `has step ${traceSteps({ commitSteps })}, more than the sample's nfe ${nfe}`);
    }
    const out: TraceSample = {
      promptId: promptId ?? `sample ${i + 1}`,
      promptText: promptText ?? "",
      tokenTexts: texts as string[],
      commitSteps,
    };
    if (Array.isArray(ids) && ids.length > 0) out.tokenIds = ids as number[];
    const step = optNumber(raw, "step", path);
    const reward = optNumber(raw, "reward", path);
    const policyVersion = optNumber(raw, "policy_version", path);
    if (step !== undefined) out.step = step;
    if (reward !== undefined) out.reward = reward;
    if (policyVersion !== undefined) out.policyVersion = policyVersion;
    if (nfe !== undefined) out.nfe = nfe;
    out.orderCorrelation = orderCorrelation(commitSteps);
    return out;
  });
}

function describe(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length}${v.length > 0 ? ` (first: ${JSON.stringify(v[0])?.slice(0, 40)})` : ""}`;
  if (typeof v === "object") return "an object";
  return `${typeof v} ${JSON.stringify(v).slice(0, 40)}`;
}
