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
export function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number);
    if (low && high && low <= high) return [low, high];
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535];
}

function canListen(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen(port, host, () => srv.close(() => resolve(true)));
  });
}

function kernelPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
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
      if ((await canListen(port, host)) && (host === "0.0.0.0" || (await canListen(port, "0.0.0.0")))) {
        handedOut.add(port);
        return port;
      }
    }
  }
  // No room below the ephemeral range (or it is crowded): let the kernel pick.
  for (;;) {
    const port = await kernelPort(host);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}
