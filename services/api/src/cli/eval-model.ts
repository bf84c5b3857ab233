import { evalCommand } from "@rlmesh/executor/eval-command";

/** `rlmesh eval`: the executor's eval, plus generation by a model when --model is given. */
export async function evalWithOptionalModel(argv: string[]): Promise<number> {
  return evalCommand(argv);
}
