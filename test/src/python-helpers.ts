// Runs the repository's Python programs (test/python/, clients/python/) from the tests, with a
// python3 that has grpcio and protobuf (Debian's python3-grpcio and python3-protobuf).
import { execFile, execFileSync } from "node:child_process";
import { delimiter, join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";

let found: string | undefined;

/**
 * A python3 that imports grpc and google.protobuf: RLMESH_PYTHON, else python3 on PATH, else
 * /usr/bin/python3 (a pyenv python3 on PATH may lack Debian's packages). Throws when none does.
 */
export function pythonWithGrpc(): string {
  if (found) return found;
  const candidates = [process.env.RLMESH_PYTHON, "python3", "/usr/bin/python3"].filter((c): c is string => !!c);
  const tried: string[] = [];
  for (const py of candidates) {
    try {
      execFileSync(py, ["-c", "import grpc, google.protobuf"], { stdio: "pipe" });
      found = py;
      return py;
    } catch (err) {
      tried.push(
        `${py}: ${String((err as { stderr?: Buffer }).stderr ?? (err as Error).message)
          .trim()
          .split("\n")
          .pop()}`,
      );
    }
  }
  throw new Error(
    `no python3 with grpcio and protobuf (tried ${tried.join("; ")}): apt-get install -y python3-grpcio python3-protobuf (scripts/setup.sh does), or set RLMESH_PYTHON`,
  );
}

export interface PythonRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a Python script with clients/python on PYTHONPATH; resolves with its exit and output. */
export function runPython(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<PythonRun> {
  const py = pythonWithGrpc();
  const pythonPath = [join(REPO_ROOT, "clients", "python"), process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  return new Promise((resolve) => {
    execFile(
      py,
      args,
      {
        cwd: REPO_ROOT,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 32 * 1024 * 1024,
        env: { ...process.env, PYTHONPATH: pythonPath, PYTHONDONTWRITEBYTECODE: "1", PYTHONUNBUFFERED: "1", ...opts.env },
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The last line of stdout as JSON, with the run's output in the error when it is not. */
export function lastJsonLine(run: PythonRun): Record<string, unknown> {
  const line = run.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`python exited ${run.code} without a JSON line\nstdout:\n${run.stdout}\nstderr:\n${run.stderr}`);
  }
}
