// Headless Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON
// messages separated by NUL on file descriptors 3 and 4), with nothing but node: navigate, wait
// for a condition in the page, read values out of the DOM, take full-page screenshots.
// Chromium is Debian's `chromium` on PATH (or RLMESH_CHROMIUM); without it this throws, never skips.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";

export class ChromiumMissingError extends Error {
  override name = "ChromiumMissingError";
}

/** The Chromium binary: RLMESH_CHROMIUM, else `chromium` on PATH; throws with how to get one. */
export function chromiumBinary(): string {
  const bin = process.env.RLMESH_CHROMIUM || "chromium";
  const probe = spawnSync(bin, ["--version"], { encoding: "utf8", timeout: 30_000 });
  if (probe.error || probe.status !== 0)
    throw new ChromiumMissingError(
      `headless Chromium is required for the browser tests and was not found (${bin}: ${probe.error?.message ?? probe.stderr.trim()}): ` +
        `apt-get install -y chromium (scripts/setup.sh does), or set RLMESH_CHROMIUM to a Chromium binary`,
    );
  return bin;
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
  method: string;
}

export interface PageErrors {
  /** Uncaught exceptions and console.error messages seen in the page. */
  messages: string[];
}

export interface BrowserPage {
  /** Navigates and waits for the load event; returns the HTTP status of the main document. */
  goto(url: string, timeoutMs?: number): Promise<number>;
  /** Evaluates an expression in the page and returns its (JSON) value. */
  evaluate<T>(expression: string): Promise<T>;
  /** Polls `expression` until it is truthy; returns its value. Throws with `what` after the timeout. */
  waitFor<T>(expression: string, what: string, timeoutMs?: number): Promise<T>;
  /** A PNG of the whole page (not only the viewport) written to `file`. */
  screenshot(file: string): Promise<void>;
  errors: PageErrors;
}

export interface Browser {
  newPage(width?: number, height?: number): Promise<BrowserPage>;
  version: string;
  close(): Promise<void>;
}

/** Starts headless Chromium with a throw-away profile. */
export async function launchChromium(): Promise<Browser> {
  const bin = chromiumBinary();
  const profile = mkdtempSync(join(tmpdir(), "rlmesh-chromium-"));
  const proc: ChildProcess = spawn(
    bin,
    [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-dev-shm-usage",
      "--no-first-run",
      "--no-default-browser-check",
      "--disable-extensions",
      "--disable-background-networking",
      "--hide-scrollbars",
      "--mute-audio",
      `--user-data-dir=${profile}`,
      "--remote-debugging-pipe",
      "about:blank",
    ],
    { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] },
  );
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const toBrowser = proc.stdio[3] as Writable;
  const fromBrowser = proc.stdio[4] as Readable;
  let nextId = 1;
  const pending = new Map<number, Pending>();
  const listeners = new Set<(msg: { method: string; params: Record<string, unknown>; sessionId?: string }) => void>();
  let buf = Buffer.alloc(0);
  fromBrowser.on("data", (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (let end = buf.indexOf(0); end >= 0; end = buf.indexOf(0)) {
      const msg = JSON.parse(buf.subarray(0, end).toString("utf8")) as {
        id?: number;
        result?: Record<string, unknown>;
        error?: { message: string };
        method?: string;
        params?: Record<string, unknown>;
        sessionId?: string;
      };
      buf = buf.subarray(end + 1);
      if (msg.id !== undefined) {
        const p = pending.get(msg.id);
        pending.delete(msg.id);
        if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
        else p?.resolve(msg.result ?? {});
      } else if (msg.method) for (const l of listeners) l({ method: msg.method, params: msg.params ?? {}, ...(msg.sessionId ? { sessionId: msg.sessionId } : {}) });
    }
  });
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  void exited.then(() => {
    for (const p of pending.values()) p.reject(new Error(`chromium exited while ${p.method} was pending: ${stderr}`));
    pending.clear();
  });
  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      if (proc.exitCode !== null || proc.signalCode !== null) return reject(new Error(`chromium has exited: ${stderr}`));
      const id = nextId++;
      pending.set(id, { resolve, reject, method });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });

  const version = String((await withTimeout(send("Browser.getVersion"), 30_000, `chromium did not answer on its DevTools pipe: ${stderr}`)).product);

  const newPage = async (width = 1400, height = 900): Promise<BrowserPage> => {
    const { targetId } = (await send("Target.createTarget", { url: "about:blank" })) as { targetId: string };
    const { sessionId } = (await send("Target.attachToTarget", { targetId, flatten: true })) as { sessionId: string };
    const s = (method: string, params: Record<string, unknown> = {}) => send(method, params, sessionId);
    const errors: PageErrors = { messages: [] };
    listeners.add((m) => {
      if (m.sessionId !== sessionId) return;
      if (m.method === "Runtime.exceptionThrown") {
        const d = m.params.exceptionDetails as { text?: string; exception?: { description?: string } };
        errors.messages.push(`exception: ${d.exception?.description ?? d.text ?? "?"}`);
      } else if (m.method === "Runtime.consoleAPICalled" && m.params.type === "error") {
        errors.messages.push(`console.error: ${JSON.stringify((m.params.args as { value?: unknown; description?: string }[]).map((a) => a.value ?? a.description))}`);
      }
    });
    await s("Page.enable");
    await s("Runtime.enable");
    await s("Network.enable");
    await s("Emulation.setDeviceMetricsOverride", { width, height, deviceScaleFactor: 1, mobile: false });
    const evaluate = async <T>(expression: string): Promise<T> => {
      const r = (await s("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true })) as {
        result: { value?: T };
        exceptionDetails?: { text: string; exception?: { description?: string } };
      };
      if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text} (evaluating ${expression})`);
      return r.result.value as T;
    };
    return {
      errors,
      evaluate,
      goto: async (url, timeoutMs = 30_000) => {
        let status = 0;
        let loaded!: () => void;
        const load = new Promise<void>((r) => (loaded = r));
        let frameId = "";
        const l = (m: { method: string; params: Record<string, unknown>; sessionId?: string }) => {
          if (m.sessionId !== sessionId) return;
          const p = m.params as { type?: string; frameId?: string; response?: { status: number } };
          if (m.method === "Network.responseReceived" && p.type === "Document" && (!frameId || p.frameId === frameId)) status = p.response?.status ?? 0;
          if (m.method === "Page.loadEventFired") loaded();
        };
        listeners.add(l);
        try {
          const nav = (await s("Page.navigate", { url })) as { frameId: string; errorText?: string };
          if (nav.errorText) throw new Error(`navigating to ${url}: ${nav.errorText}`);
          frameId = nav.frameId;
          await withTimeout(load, timeoutMs, `${url} did not finish loading in ${timeoutMs} ms`);
        } finally {
          listeners.delete(l);
        }
        return status;
      },
      waitFor: async <T>(expression: string, what: string, timeoutMs = 30_000): Promise<T> => {
        const deadline = Date.now() + timeoutMs;
        let last: unknown;
        for (;;) {
          try {
            last = await evaluate<T>(expression);
            if (last) return last as T;
          } catch (err) {
            last = (err as Error).message;
          }
          if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)}; page errors: ${JSON.stringify(errors.messages)})`);
          await new Promise((r) => setTimeout(r, 200));
        }
      },
      screenshot: async (file) => {
        const m = (await s("Page.getLayoutMetrics")) as { cssContentSize: { width: number; height: number } };
        const clip = { x: 0, y: 0, width: Math.ceil(Math.max(width, m.cssContentSize.width)), height: Math.ceil(Math.min(8000, m.cssContentSize.height)), scale: 1 };
        const { data } = (await s("Page.captureScreenshot", { format: "png", captureBeyondViewport: true, clip })) as { data: string };
        writeFileSync(file, Buffer.from(data, "base64"));
      },
    };
  };

  return {
    version,
    newPage,
    close: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        await send("Browser.close").catch(() => undefined);
        const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

async function withTimeout<T>(p: Promise<T>, ms: number, message: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(message)), ms)))]);
  } finally {
    clearTimeout(t);
  }
}
