import { chmodSync, closeSync, linkSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Ports handed out by this process: two children of one mesh never get the same one. */
const handedOut = new Set<number>();

/**
 * Ports handed out by any process on this host in the last RESERVE_MS: one file per port under
 * `RLMESH_PORT_DIR` (default: the temp dir's `rlmesh-ports`), created exclusively. Two meshes
 * started at the same moment (two `rlmesh up`, two test files) each probe a port free and release
 * it before their child binds it; without a shared reservation both could draw the same one
 * (seen once: a rollout worker hit its crash-loop limit on EADDRINUSE).
 */
const RESERVE_MS = 120_000;
function portDir(): string {
  return process.env.RLMESH_PORT_DIR || join(tmpdir(), "rlmesh-ports");
}

/** True when this process now holds `port`'s reservation (a fresh one, or a stale one taken over). */
export function reservePort(port: number): boolean {
  const now = Date.now();
  const dir = portDir();
  const file = join(dir, String(port));
  try {
    if (mkdirSync(dir, { recursive: true }) !== undefined) chmodSync(dir, 0o1777); // shared by every user, as /tmp
  } catch {
    return true; // no shared place to reserve in: the in-process set still applies
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, "wx", 0o666);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") return true; // unwritable dir: do not block
      try {
        if (now - statSync(file).mtimeMs < RESERVE_MS) return false;
        // Stale: its holder's child has bound the port or given it up long ago. Take it over by
        // renaming it aside (atomic: of two processes only one gets the file) and checking that
        // what was renamed is still the stale one; a fresh one (another process's reservation made
        // since the stat) goes back (link fails if a third has meanwhile reserved the port).
        const aside = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}`;
        renameSync(file, aside);
        const fresh = now - statSync(aside).mtimeMs < RESERVE_MS;
        if (fresh) {
          try {
            linkSync(aside, file);
          } finally {
            unlinkSync(aside);
          }
          return false;
        }
        unlinkSync(aside);
      } catch {
        // raced with another process over the stale file: try once more
      }
    }
  }
  return false;
}

/**
 * The kernel's ephemeral range ([low, high]), where outgoing connections take their local ports.
 * A port probed free there can be taken by any new connection (to Redis, dockerd, a gRPC peer)
 * before the child server binds it: measured as a rollout worker dying with EADDRINUSE on its
 * metrics port at start-up.
 */
let ephemeral: [number, number] | null = null;
export function ephemeralPortRange(): [number, number] {
  if (ephemeral) return ephemeral;
  ephemeral = [49152, 65535]; // not Linux: the IANA dynamic range
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && high && low <= high) ephemeral = [low, high];
  } catch {
    // keep the IANA range
  }
  return ephemeral;
}

/** Binds `port` (0: the kernel picks) on `host` and releases it: the port, or null if taken. */
function tryListen(port: number, host: string): Promise<number | null> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(null));
    srv.listen(port, host, () => {
      const addr = srv.address();
      const bound = typeof addr === "object" && addr ? addr.port : null;
      srv.close(() => resolve(bound));
    });
  });
}

/**
 * A TCP port that was free on `host` (and on all interfaces) a moment ago, for child servers
 * that need a fixed port. It is drawn below the ephemeral range, so no outgoing connection can
 * take it before the child binds it, never twice in one process, and not while another process on
 * this host holds it reserved (see reservePort).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [low] = ephemeralPortRange();
  const top = Math.min(low - 1, 65535);
  const bottom = Math.max(1024, top - 12_000);
  if (top > bottom) {
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
      if (handedOut.has(port)) continue;
      if ((await tryListen(port, host)) && (host === "0.0.0.0" || (await tryListen(port, "0.0.0.0"))) && reservePort(port)) {
        handedOut.add(port);
        return port;
      }
    }
  }
  // No room below the ephemeral range (or it is crowded): let the kernel pick.
  for (;;) {
    const port = await tryListen(0, host);
    if (port === null) throw new Error(`cannot bind any TCP port on ${host}`);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
