/** One `rlmesh` sub-command. */
export interface Command {
  name: string;
  summary: string;
  usage: string;
  /** Longer help text printed by `--help`. */
  help?: string;
  /** Returns the process exit code. */
  run(argv: string[]): Promise<number>;
}
