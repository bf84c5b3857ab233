// Names of the held-out lines in a job's eval events, shared by the coordinator (which writes
// them) and the CLI (which reads them back for the demo and bench rl).

/** The split name of the primary held-out line in eval events. */
export const PRIMARY_EVAL_SPLIT = "eval";

/** An extra held-out line is named after its file: `.../test-compositional.jsonl` → `test-compositional`. */
export function evalSplitName(path: string): string {
  const base = path.split(/[\\/]/).pop() ?? path;
  return base.replace(/\.(jsonl|json)$/i, "") || base;
}

/**
 * Eval event mode of a job's trained weights, greedy, just before its moving average of them
 * (grpo.ema_decay) became its final weights; the final eval after it scores the average.
 */
export const LAST_ITERATE_MODE = "last_iterate";
