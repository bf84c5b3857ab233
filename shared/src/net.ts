import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/** Ports handed out by this process: two children of one mesh never get the same one. */
const handedOut = new Set<number>();

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
 * take it before the child binds it, and never twice in one process.
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  const [low] = ephemeralPortRange();
  const top = Math.min(low - 1, 65535);
  const bottom = Math.max(1024, top - 12_000);
  if (top > bottom) {
    for (let attempt = 0; attempt < 64; attempt++) {
      const port = bottom + Math.floor(Math.random() * (top - bottom + 1));
      if (handedOut.has(port)) continue;
      if ((await tryListen(port, host)) && (host === "0.0.0.0" || (await tryListen(port, "0.0.0.0")))) {
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
