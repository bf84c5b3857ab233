// The web console: express 5 (Bull Board's server adapter is an express app), server-side HTML
// from the job store, Bull Board for the reward queue. Read-only unless the operator configured a
// token and the request presents it.
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type NextFunction, type Request, type Response } from "express";
import { Queue } from "bullmq";
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Redis } from "ioredis";
import type { Job, JobState, Logger } from "@rlmesh/shared";
import type { TracedSample__Output as TracedSample } from "@rlmesh/shared/gen/rlmesh/v1/TracedSample";
import { renderTraceHtml } from "@rlmesh/shared/trace/index";
import type { JobStore } from "../job-store.js";
import { jobView } from "./console-model.js";
import { errorPage, page } from "./html.js";
import { jobPage, jobsPage } from "./pages.js";

export interface ConsoleDeps {
  store: Pick<JobStore, "get" | "list" | "readEvents">;
  /** A connection the console duplicates for Bull Board's queue handle. */
  redis: Redis;
  rewardQueue: string;
  /** The operator token; "" = read-only, no route can change anything. */
  token: string;
  logger: Logger;
  /** A job's stored traced samples, oldest first (absent: the console says traces are unavailable). */
  traces?: (jobId: string) => Promise<TracedSample[]>;
  /** The trace viewer: a self-contained HTML page replaying one traced sample (default: shared's renderTraceHtml). */
  renderTrace?: (sample: TracedSample, title: string) => string;
  /** Cancels a queued or running job (offered to the operator only). */
  cancel?: (jobId: string, reason: string) => Promise<Job>;
}

export interface ConsoleServer {
  port: number;
  host: string;
  url: string;
  close(): Promise<void>;
}

/** An HTTP error the handlers throw; the error handler renders it as a page or JSON. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
  ) {
    super(message);
  }
}

const STATES = ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] as const;
const JOB_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const COOKIE = "rlmesh_ui_token";
const MAX_LIMIT = 1000;

/** Only these query parameters, each at most once: anything else is a 400 naming it. */
function query(req: Request, allowed: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query as Record<string, unknown>)) {
    if (!allowed.includes(k))
      throw new HttpError(400, "Bad request", `unknown query parameter ${JSON.stringify(k)}${allowed.length ? `; this page takes ${allowed.join(", ")}` : "; this page takes none"}`);
    if (typeof v !== "string") throw new HttpError(400, "Bad request", `query parameter ${k} must be given once, as a plain value`);
    out[k] = v;
  }
  return out;
}

function intParam(name: string, raw: string | undefined, dflt: number, min: number, max: number): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isInteger(n) || n < min || n > max)
    throw new HttpError(400, "Bad request", `${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  return n;
}

function jobId(raw: string | undefined): string {
  if (!raw || !JOB_ID.test(raw))
    throw new HttpError(400, "Bad request", `malformed job id ${JSON.stringify(raw ?? "")}: ids look like job-<time>-<hex> (letters, digits, '-', '_', '.')`);
  return raw;
}

const digest = (s: string) => createHash("sha256").update(s).digest();

/** The host of an Origin header; null for an opaque origin ("null", a sandboxed frame) or garbage. */
function originHost(origin: string): string | null {
  try {
    return new URL(origin).host || null;
  } catch {
    return null;
  }
}

function cookieToken(req: Request): string | undefined {
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const [k, ...rest] = part.trim().split("=");
    if (k !== COOKIE) continue;
    try {
      return decodeURIComponent(rest.join("="));
    } catch {
      return undefined; // a malformed cookie is no token (never a 500)
    }
  }
  return undefined;
}

const wantsJson = (req: Request) => req.originalUrl.includes("/api/") || (req.accepts(["html", "json"]) === "json" && !req.accepts("html"));

function sendError(req: Request, res: Response, status: number, title: string, message: string): void {
  if (wantsJson(req)) res.status(status).json({ error: { status, title, message } });
  else res.status(status).type("html").send(errorPage(status, title, message));
}

/** Builds the console's express app (not listening) and what closing it releases. */
export function createConsoleApp(deps: ConsoleDeps): { app: express.Express; close: () => Promise<void> } {
  const { store, token, logger } = deps;
  const app = express();
  app.disable("x-powered-by");
  app.set("etag", false);

  // Who is the operator: the configured token presented as a Bearer header, or the login cookie.
  const isOperator = (req: Request): boolean => {
    if (!token) return false;
    const auth = req.headers.authorization ?? "";
    const presented = auth.startsWith("Bearer ") ? auth.slice(7).trim() : cookieToken(req);
    return presented !== undefined && timingSafeEqual(digest(presented), digest(token));
  };
  const readOnlyMessage = token
    ? "this console is read-only without the operator token: present it as 'Authorization: Bearer <token>' (or log in at /ui/login)"
    : "this console is read-only: no operator token is configured (RLMESH_UI_TOKEN), so nothing can be submitted, cancelled or changed from it";

  app.get("/", (_req, res) => res.redirect("/ui"));

  // Login (only with a token configured): a form that sets an HttpOnly, SameSite=Strict cookie.
  app.get("/ui/login", (req, res) => {
    query(req, []);
    if (!token) throw new HttpError(404, "Not found", "there is no login: no operator token is configured (RLMESH_UI_TOKEN), the console is read-only");
    res.type("html").send(
      page({
        title: "operator login",
        body: `<h1>Operator login</h1><form method="post" action="/ui/login" class="card"><label>token <input type="password" name="token" autocomplete="off"></label> <button type="submit">log in</button></form>`,
      }),
    );
  });
  app.post("/ui/login", express.urlencoded({ extended: false, limit: "4kb" }), (req, res) => {
    if (!token) throw new HttpError(403, "Forbidden", readOnlyMessage);
    const given = typeof req.body?.token === "string" ? (req.body.token as string) : "";
    if (!given || !timingSafeEqual(digest(given), digest(token))) throw new HttpError(403, "Forbidden", "wrong operator token");
    res.setHeader("set-cookie", `${COOKIE}=${encodeURIComponent(token)}; Path=/ui; HttpOnly; SameSite=Strict`);
    res.redirect(303, "/ui");
  });

  // The read-only rule: nothing but GET and HEAD unless the operator token is presented. A cookie
  // alone does not carry a cross-site request (SameSite=Strict); an Origin naming another host
  // is refused as well.
  app.use("/ui", (req, _res, next) => {
    if (req.method === "GET" || req.method === "HEAD") return next();
    if (!isOperator(req)) throw new HttpError(403, "Forbidden", readOnlyMessage);
    const origin = req.headers.origin;
    if (!req.headers.authorization && origin && originHost(origin) !== req.headers.host)
      throw new HttpError(403, "Forbidden", `cross-site request from ${origin} refused`);
    next();
  });

  // Bull Board for the reward queue: read-only for everyone at /ui/queues; writable at
  // /ui/admin/queues only when an operator token is configured, and only for the operator.
  const connection = deps.redis.duplicate();
  const queue = new Queue(deps.rewardQueue, { connection });
  queue.on("error", (err) => logger.warn("console: reward queue error", { err: err.message }));
  const board = (basePath: string, readOnlyMode: boolean) => {
    const adapter = new ExpressAdapter();
    adapter.setBasePath(basePath);
    createBullBoard({
      queues: [new BullMQAdapter(queue, { readOnlyMode, description: "reward jobs: one per candidate, scored by the executors" })],
      serverAdapter: adapter,
      options: { uiConfig: { boardTitle: readOnlyMode ? "rlmesh reward queue (read-only)" : "rlmesh reward queue (operator)" } },
    });
    return adapter.getRouter() as express.Router;
  };
  app.use("/ui/queues", board("/ui/queues", true));
  if (token) {
    const admin = board("/ui/admin/queues", false);
    app.use(
      "/ui/admin/queues",
      (req, _res, next) => {
        if (!isOperator(req)) throw new HttpError(403, "Forbidden", "the writable queue board is for the operator: present the token (Authorization: Bearer, or log in at /ui/login)");
        next();
      },
      admin,
    );
  }

  app.get("/ui", async (req, res) => {
    const q = query(req, ["state", "limit"]);
    const state = q.state?.toUpperCase().replace(/^JOB_STATE_/, "");
    if (q.state !== undefined && !STATES.includes(state as (typeof STATES)[number]))
      throw new HttpError(400, "Bad request", `state must be one of ${STATES.join(", ")}, got ${JSON.stringify(q.state)}`);
    const limit = intParam("limit", q.limit, 100, 1, MAX_LIMIT);
    const jobs = await store.list(state ? (`JOB_STATE_${state}` as JobState) : undefined, limit);
    res.type("html").send(jobsPage(jobs, { ...(state ? { state } : {}), limit, operator: isOperator(req) }));
  });

  const loadJob = async (raw: string | undefined): Promise<Job> => {
    const id = jobId(raw);
    const job = await store.get(id);
    if (!job) throw new HttpError(404, "Job not found", `no job ${id}: it never existed here, or it expired with its data. All jobs: /ui`);
    return job;
  };
  const loadTraces = async (id: string): Promise<{ traces: TracedSample[]; note?: string }> => {
    if (!deps.traces) return { traces: [], note: "this api does not serve traces" };
    try {
      return { traces: await deps.traces(id) };
    } catch (err) {
      logger.warn("console: reading traces failed", { job: id, err: (err as Error).message });
      return { traces: [], note: `traces could not be read: ${(err as Error).message}` };
    }
  };

  app.get("/ui/jobs/:id", async (req, res) => {
    query(req, []);
    const job = await loadJob(req.params.id);
    const [events, t] = await Promise.all([store.readEvents(job.id, 0), loadTraces(job.id)]);
    res.type("html").send(jobPage(jobView(job, events), { operator: isOperator(req), traces: t.traces, ...(t.note ? { tracesNote: t.note } : {}) }));
  });

  app.get("/ui/jobs/:id/traces/:index", async (req, res) => {
    query(req, []);
    const job = await loadJob(req.params.id);
    const raw = req.params.index;
    if (!/^\d+$/.test(raw)) throw new HttpError(400, "Bad request", `trace index must be a non-negative integer, got ${JSON.stringify(raw)}`);
    const { traces, note } = await loadTraces(job.id);
    const i = Number(raw);
    const sample = traces[i];
    if (!sample)
      throw new HttpError(404, "Trace not found", `job ${job.id} has ${traces.length} stored traced sample(s) (indices 0..${traces.length - 1}); there is no #${i}${note ? ` (${note})` : ""}`);
    const title = `${job.id} step ${sample.step} · ${sample.promptId}`;
    res.type("html").send(deps.renderTrace ? deps.renderTrace(sample, title) : renderTraceHtml([sample], { title, subtitle: `reward ${sample.reward} · policy v${sample.policyVersion} · back: /ui/jobs/${job.id}` }));
  });

  app.post("/ui/jobs/:id/cancel", async (req, res) => {
    const job = await loadJob(req.params.id);
    if (!deps.cancel) throw new HttpError(501, "Not implemented", "this console cannot cancel jobs");
    if (job.state !== "JOB_STATE_RUNNING" && job.state !== "JOB_STATE_QUEUED")
      throw new HttpError(409, "Conflict", `job ${job.id} has already ended (${job.state}); only a queued or running job can be cancelled`);
    const next = await deps.cancel(job.id, "cancelled from the console by the operator");
    if (wantsJson(req) || req.headers.authorization) res.json({ job: next });
    else res.redirect(303, `/ui/jobs/${encodeURIComponent(job.id)}`);
  });

  // JSON of the same views (scripts, tests).
  app.get("/ui/api/jobs", async (req, res) => {
    const q = query(req, ["limit"]);
    res.json({ jobs: await store.list(undefined, intParam("limit", q.limit, 100, 1, MAX_LIMIT)) });
  });
  app.get("/ui/api/jobs/:id", async (req, res) => {
    query(req, []);
    const job = await loadJob(req.params.id);
    res.json(jobView(job, await store.readEvents(job.id, 0)));
  });

  app.use((req, _res, next) => next(new HttpError(404, "Not found", `nothing at ${req.path}: the console has /ui (jobs), /ui/jobs/<id> and /ui/queues`)));
  app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (err instanceof HttpError) return sendError(req, res, err.status, err.title, err.message);
    const e = err as { status?: number; statusCode?: number; message?: string };
    const status = e.status ?? e.statusCode ?? 500;
    if (status >= 500) logger.warn("console: request failed", { path: req.path, err: e.message });
    sendError(req, res, status, status >= 500 ? "Server error" : "Bad request", e.message ?? String(err));
  });

  return {
    app,
    close: async () => {
      await queue.close().catch(() => undefined);
      connection.disconnect();
    },
  };
}

/** Starts the console on host:port (port 0 = a free one). */
export async function startConsole(deps: ConsoleDeps, host: string, port: number): Promise<ConsoleServer> {
  const { app, close } = createConsoleApp(deps);
  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(port, host, (err?: Error) => (err ? reject(err) : resolve(s)));
    s.once("error", reject);
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.family === "IPv6" ? `[${addr.address}]` : addr.address;
  return {
    port: addr.port,
    host: addr.address,
    url: `http://${shownHost}:${addr.port}/ui`,
    close: async () => {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await close();
    },
  };
}

