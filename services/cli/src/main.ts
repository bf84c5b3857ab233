import { isServiceError } from "@rlmesh/shared";
import { UsageError } from "./args.js";
import type { Command } from "./command.js";
import { cancelCommand, jobsCommand, submitCommand, watchCommand } from "./job-commands.js";
import { healthCommand } from "./health-command.js";
import { demoCommand, upCommand } from "./mesh-commands.js";
import { delegatedCommands } from "./delegated-commands.js";
import { traceCommand } from "./trace/trace-command.js";

const COMMANDS: Command[] = [
  demoCommand,
  upCommand,
  submitCommand,
  watchCommand,
  jobsCommand,
  cancelCommand,
  healthCommand,
  traceCommand,
  ...delegatedCommands,
];

function usage(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    "rlmesh — RL rollout-and-reward service mesh for code LLMs",
    "",
    "usage: rlmesh <command> [options]   (rlmesh <command> --help for details)",
    "",
    ...COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`),
  ].join("\n");
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === "--help" || name === "-h" || name === "help") {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    console.error(`unknown command: ${name}\n\n${usage()}`);
    return 2;
  }
  if (rest.includes("--help") || rest.includes("-h")) {
    console.log(`usage: ${cmd.usage}\n\n${cmd.summary}${cmd.help ? `\n\n${cmd.help}` : ""}`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`rlmesh ${cmd.name}: ${err.message}\nusage: ${cmd.usage}`);
      return 2;
    }
    if (isServiceError(err)) {
      console.error(`rlmesh ${cmd.name}: ${err.details || err.message} (gRPC status ${err.code})`);
      return 1;
    }
    console.error(`rlmesh ${cmd.name}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
