import { checkHealth } from "@rlmesh/shared";
import { parseArgs, UsageError } from "./args.js";
import type { Command } from "./command.js";

export const healthCommand: Command = {
  name: "health",
  summary: "check the gRPC health of one or more services (host:port)",
  usage: "rlmesh health ADDR [ADDR...]",
  async run(argv) {
    const { positional } = parseArgs(argv);
    if (positional.length === 0) throw new UsageError("give at least one host:port");
    let bad = 0;
    for (const addr of positional) {
      const status = await checkHealth(addr).catch((err: Error) => `unreachable (${err.message})`);
      console.log(`${addr}  ${status}`);
      if (status !== "SERVING") bad++;
    }
    return bad ? 1 : 0;
  },
};
