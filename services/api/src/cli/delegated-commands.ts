import type { Command } from "./command.js";

/** Commands implemented in other packages, loaded on demand so `rlmesh --help` stays fast. */
export const delegatedCommands: Command[] = [];
