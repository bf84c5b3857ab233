/**
 * The unbiased pass@k estimator of Chen et al. (2021), "Evaluating Large Language Models
 * Trained on Code": for a task with n samples of which c pass, 1 - C(n-c, k) / C(n, k), the
 * chance that k samples drawn without replacement include a passing one. Computed as the
 * product 1 - prod_{i=n-c+1}^{n} (1 - k/i), which never forms the huge binomials.
 */
export function passAtK(n: number, c: number, k: number): number {
  if (!Number.isInteger(n) || !Number.isInteger(c) || !Number.isInteger(k) || n < 0 || c < 0 || c > n || k < 1) {
    throw new RangeError(`passAtK needs integers 0 <= c <= n and k >= 1, got n=${n} c=${c} k=${k}`);
  }
  if (k > n) throw new RangeError(`pass@${k} needs at least ${k} samples, got n=${n}`);
  if (n - c < k) return 1;
  let fail = 1;
  for (let i = n - c + 1; i <= n; i++) fail *= 1 - k / i;
  return 1 - fail;
}

/** Samples and passes of one task; n = 0 for a task nobody answered. */
export interface TaskCounts {
  task_id: string;
  n: number;
  c: number;
}

export interface PassAtKReport {
  /** pass@k (a fraction) averaged over every task, for each k that every answered task allows. */
  pass_at_k: Record<string, number>;
  /** The ks not reported and why. */
  skipped: { k: number; reason: string }[];
}

/**
 * pass@k over tasks, as human-eval reports it: a k is reported only when every answered task
 * has at least k samples (else the estimate would silently mix ks). A task without samples
 * (n = 0) counts as 0 for every k: it was in the dataset and nothing solved it.
 */
export function passAtKOverTasks(tasks: TaskCounts[], ks: number[]): PassAtKReport {
  const answered = tasks.filter((t) => t.n > 0);
  const out: PassAtKReport = { pass_at_k: {}, skipped: [] };
  if (tasks.length === 0) {
    for (const k of ks) out.skipped.push({ k, reason: "no tasks" });
    return out;
  }
  const fewest = answered.reduce<TaskCounts | undefined>((m, t) => (m === undefined || t.n < m.n ? t : m), undefined);
  for (const k of [...new Set(ks)].sort((a, b) => a - b)) {
    if (fewest === undefined) {
      out.skipped.push({ k, reason: "no task has a sample" });
    } else if (fewest.n < k) {
      out.skipped.push({
        k,
        reason: `needs at least ${k} samples for every task; the fewest is ${fewest.n} (task ${fewest.task_id})`,
      });
    } else {
      const sum = answered.reduce((s, t) => s + passAtK(t.n, t.c, k), 0);
      out.pass_at_k[String(k)] = sum / tasks.length;
    }
  }
  return out;
}

/** Parses `--k 1,10,100`. */
export function parseKs(raw: string): number[] {
  const ks = raw.split(",").map((s) => s.trim());
  const out: number[] = [];
  for (const s of ks) {
    const k = Number(s);
    if (s === "" || !Number.isInteger(k) || k < 1) throw new RangeError(`--k must be a comma-separated list of positive integers, got ${JSON.stringify(raw)}`);
    out.push(k);
  }
  return [...new Set(out)].sort((a, b) => a - b);
}
