// docker-compose.yml: (a) the file is valid for docker-compose 1.29 and says what the cluster
// needs; (b) the cluster really comes up from images built offline (base images from Debian
// packages, the sandbox image, the service image), every container turns healthy, the api
// answers gRPC health on its published loopback port, Prometheus scrapes every service, and
// everything is torn down again. Needs dockerd, docker-compose and root (debootstrap the first
// time); fails loudly without them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { checkHealth, freePort } from "@rlmesh/shared";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { jobClient, jobs } from "@rlmesh/cli/job-client";
import { loadYaml } from "./deploy-yaml.js";

const exec = promisify(execFile);
const COMPOSE_FILE = join(REPO_ROOT, "docker-compose.yml");
/** Every service the default profile brings up (grafana is an optional profile). */
const CLUSTER_SERVICES = ["api", "executor", "learner", "prometheus", "redis", "rollout"];
const RLMESH_SERVICES = ["api", "executor", "learner", "rollout"];
const ROLLOUT_REPLICAS = 2;
const HEALTHY_TIMEOUT_MS = 180_000;
const SCRAPED_TIMEOUT_MS = 60_000;

interface RunResult {
  stdout: string;
  stderr: string;
}

async function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  try {
    return await exec(cmd, args, {
      cwd: REPO_ROOT,
      env: { ...process.env, ...opts.env },
      timeout: opts.timeoutMs ?? 300_000,
      maxBuffer: 64 << 20,
    });
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${e.message}\n${e.stdout ?? ""}`); // the message holds the command and its stderr
  }
}

interface ComposeConfig {
  services: Record<
    string,
    {
      image?: string;
      command?: string[];
      ports?: (string | { published?: number | string; target?: number; host_ip?: string })[];
      healthcheck?: { test?: string[] };
      volumes?: (string | { source?: string; target?: string })[];
      profiles?: string[];
      environment?: Record<string, string>;
    }
  >;
  volumes?: Record<string, unknown>;
}

async function composeConfig(env: NodeJS.ProcessEnv = {}): Promise<ComposeConfig> {
  const { stdout } = await run("docker-compose", ["-f", COMPOSE_FILE, "config"], { env, timeoutMs: 60_000 });
  return (await loadYaml(stdout)) as ComposeConfig;
}

const volumeTargets = (svc: ComposeConfig["services"][string]): string[] =>
  (svc.volumes ?? []).map((v) => (typeof v === "string" ? (v.split(":")[1] ?? "") : (v.target ?? "")));

test("docker-compose config validates and describes the cluster", async () => {
  await run("docker-compose", ["-f", COMPOSE_FILE, "config", "-q"], { timeoutMs: 60_000 });
  const config = await composeConfig();
  const services = config.services;
  assert.deepEqual(
    Object.keys(services)
      .filter((s) => !services[s]?.profiles?.includes("grafana"))
      .sort(),
    CLUSTER_SERVICES,
  );
  assert.deepEqual(services.grafana?.profiles, ["grafana"], "grafana is an optional profile (not packaged by Debian)");
  // Grafana loads the dashboards from where compose mounts them.
  const provider = (await loadYaml(
    readFileSync(join(REPO_ROOT, "deploy", "grafana", "provisioning", "dashboards", "rlmesh.yml"), "utf8"),
  )) as {
    providers: { options: { path: string } }[];
  };
  const grafanaMounts = volumeTargets(services.grafana);
  assert.ok(grafanaMounts.includes(provider.providers[0]!.options.path), `dashboards mounted at ${provider.providers[0]!.options.path}`);
  assert.ok(grafanaMounts.includes("/etc/grafana/provisioning"));

  const redis = services.redis!.command!.join(" ");
  assert.match(redis, /--appendonly yes/);
  assert.match(redis, /--maxmemory-policy noeviction/);

  for (const name of CLUSTER_SERVICES) assert.ok(services[name]?.healthcheck?.test?.length, `${name} has a healthcheck`);
  for (const name of RLMESH_SERVICES) {
    const svc = services[name]!;
    assert.deepEqual(svc.command, [`services/${name}/dist/main.js`]);
    assert.equal(svc.environment?.REDIS_URL, "redis://redis:6379");
    assert.ok(volumeTargets(svc).includes("/app/models"), `${name} mounts the models`);
  }
  assert.ok(volumeTargets(services.learner!).includes("/var/lib/rlmesh/checkpoints"), "learner checkpoints volume");
  assert.ok(volumeTargets(services.executor!).includes("/var/run/docker.sock"), "executor reaches dockerd");
  assert.equal(services.rollout!.ports, undefined, "rollout publishes no port, so it scales");

  const apiPort = (services.api!.ports ?? [])[0];
  const published = typeof apiPort === "string" ? apiPort : `${apiPort?.host_ip}:${apiPort?.published}:${apiPort?.target}`;
  assert.match(published, /^127\.0\.0\.1:50051:50051/, "api published on loopback for `npx rlmesh submit`");
});

/** The steps of the bring-up test, in order; each gets the shared context. */
interface ClusterContext {
  project: string;
  image: string;
  env: NodeJS.ProcessEnv;
  apiPort: number;
  prometheusPort: number;
  timings: Record<string, number>;
}
type Step = { name: string; run: (ctx: ClusterContext) => Promise<void> };

const compose = (ctx: ClusterContext, args: string[], timeoutMs?: number) =>
  run("docker-compose", ["-f", COMPOSE_FILE, "-p", ctx.project, ...args], { env: ctx.env, ...(timeoutMs ? { timeoutMs } : {}) });

async function containerHealth(ctx: ClusterContext): Promise<Record<string, string>> {
  const { stdout } = await compose(ctx, ["ps", "-q"]);
  const ids = stdout.split("\n").filter(Boolean);
  if (ids.length === 0) return {};
  const { stdout: states } = await run("docker", [
    "inspect",
    "-f",
    '{{ index .Config.Labels "com.docker.compose.service" }}/{{ .Name }} {{ .State.Status }} {{ if .State.Health }}{{ .State.Health.Status }}{{ else }}none{{ end }}',
    ...ids,
  ]);
  return Object.fromEntries(
    states
      .split("\n")
      .filter(Boolean)
      .map((l) => {
        const [name, status, health] = l.split(" ");
        return [name!, `${status}/${health}`];
      }),
  );
}

const STEPS: Step[] = [
  {
    name: "build base images (Debian packages, skipped when present)",
    run: async () => void (await run("bash", ["deploy/docker/build-base-images.sh"], { timeoutMs: 900_000 })),
  },
  {
    name: "build the sandbox image",
    run: async () => void (await run("bash", ["deploy/sandbox/build-image.sh"], { timeoutMs: 600_000 })),
  },
  {
    name: "build the service image",
    run: async (ctx) => void (await run("bash", ["deploy/docker/build-service-image.sh"], { env: ctx.env, timeoutMs: 600_000 })),
  },
  {
    name: "docker-compose up",
    run: async (ctx) => void (await compose(ctx, ["up", "-d", "--no-build", "--scale", `rollout=${ROLLOUT_REPLICAS}`], 300_000)),
  },
  {
    name: "every container healthy",
    run: async (ctx) => {
      const deadline = Date.now() + HEALTHY_TIMEOUT_MS;
      let states: Record<string, string> = {};
      while (Date.now() < deadline) {
        states = await containerHealth(ctx);
        const values = Object.values(states);
        const expected = CLUSTER_SERVICES.length + ROLLOUT_REPLICAS - 1;
        if (values.length === expected && values.every((s) => s === "running/healthy")) return;
        const dead = Object.entries(states).filter(([, s]) => s.startsWith("exited") || s.endsWith("/unhealthy"));
        if (dead.length > 0) break;
        await sleep(2000);
      }
      const { stdout: logs } = await compose(ctx, ["logs", "--no-color", "--tail", "40"]);
      assert.fail(`containers not healthy: ${JSON.stringify(states)}\n${logs}`);
    },
  },
  {
    name: "api answers gRPC health from the host",
    run: async (ctx) => assert.equal(await checkHealth(`127.0.0.1:${ctx.apiPort}`, "", 5000), "SERVING"),
  },
  {
    name: "Prometheus scrapes every service replica",
    run: async (ctx) => {
      const deadline = Date.now() + SCRAPED_TIMEOUT_MS;
      let last = "";
      while (Date.now() < deadline) {
        const res = await fetch(
          `http://127.0.0.1:${ctx.prometheusPort}/api/v1/query?query=${encodeURIComponent('up{job=~"rlmesh-.*"} == 1')}`,
        ).catch(() => undefined);
        if (res?.ok) {
          const body = (await res.json()) as { data: { result: { metric: { job: string } }[] } };
          const jobs = body.data.result.map((r) => r.metric.job);
          last = jobs.sort().join(",");
          const expected = RLMESH_SERVICES.length + ROLLOUT_REPLICAS - 1;
          if (jobs.length === expected && RLMESH_SERVICES.every((s) => jobs.includes(`rlmesh-${s}`))) return;
        }
        await sleep(2000);
      }
      assert.fail(`Prometheus does not scrape every service (up == 1 for: ${last})`);
    },
  },
  {
    name: "executor warmed sandboxes through the host's dockerd",
    run: async (ctx) => {
      const deadline = Date.now() + SCRAPED_TIMEOUT_MS;
      let last = "no sample";
      while (Date.now() < deadline) {
        const res = await fetch(
          `http://127.0.0.1:${ctx.prometheusPort}/api/v1/query?query=${encodeURIComponent("sum(rlmesh_sandbox_pool_size)")}`,
        );
        const body = (await res.json()) as { data: { result: { value: [number, string] }[] } };
        last = body.data.result[0]?.value[1] ?? "no sample";
        if (Number(last) >= 1) return;
        await sleep(2000);
      }
      assert.fail(`rlmesh_sandbox_pool_size stayed at ${last}`);
    },
  },
  {
    name: "a short RL job submitted from the host runs through the cluster",
    run: async (ctx) => {
      // Paths are the api container's (the image carries models/ and datasets/ under /app).
      const client = jobClient(`127.0.0.1:${ctx.apiPort}`);
      try {
        const job = await jobs.submit(client, {
          name: "compose",
          modelDir: "/app/models/tiny-coder",
          dataset: { path: "/app/datasets/toy/train.jsonl", limit: 50 },
          steps: 1,
          promptsPerStep: 2,
          groupSize: 4,
          seed: 3,
        });
        const seen: string[] = [];
        for await (const e of jobs.watch(client, job.id))
          seen.push(e.state?.to ?? (e.step ? `step ${e.step.step}: ${e.step.candidates} candidates` : (e.log?.message ?? "")));
        const done = await jobs.get(client, job.id);
        assert.equal(done.state, "JOB_STATE_SUCCEEDED", seen.join("\n"));
        assert.ok(seen.includes("step 1: 8 candidates"), seen.join("\n"));
      } finally {
        client.close();
      }
    },
  },
];

test("the cluster builds offline, comes up healthy and is scraped, then tears down", { timeout: 1_500_000 }, async (t) => {
  const ctx: ClusterContext = {
    project: `rlmeshtest${process.pid}`,
    image: `rlmesh:compose-test-${process.pid}`,
    apiPort: await freePort(),
    prometheusPort: await freePort(),
    env: {},
    timings: {},
  };
  ctx.env = {
    RLMESH_IMAGE: ctx.image,
    RLMESH_API_PUBLISH_PORT: String(ctx.apiPort),
    RLMESH_PROMETHEUS_PUBLISH_PORT: String(ctx.prometheusPort),
  };
  const started = Date.now();
  try {
    for (const step of STEPS) {
      const t0 = Date.now();
      await step.run(ctx);
      ctx.timings[step.name] = Date.now() - t0;
    }
  } finally {
    const t0 = Date.now();
    await compose(ctx, ["down", "-v", "--remove-orphans", "--timeout", "20"], 180_000).catch((e: Error) =>
      t.diagnostic(`down: ${e.message}`),
    );
    await run("docker", ["image", "rm", "-f", ctx.image]).catch((e: Error) => t.diagnostic(`rmi: ${e.message}`));
    ctx.timings["docker-compose down + image rm"] = Date.now() - t0;
    t.diagnostic(`timings (ms): ${JSON.stringify(ctx.timings)}; total ${Date.now() - started} ms`);
  }
  const { stdout: left } = await run("docker", ["ps", "-aq", "--filter", `label=com.docker.compose.project=${ctx.project}`]);
  assert.equal(left.trim(), "", "no container of the test project is left");
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

test("supervision: every compose service restarts when it exits, and its healthcheck probes its own port", async () => {
  const raw = (await loadYaml(readFileSync(COMPOSE_FILE, "utf8"))) as {
    services: Record<string, { restart?: string; healthcheck?: { test?: string[] }; environment?: Record<string, string> }>;
    "x-rlmesh-service"?: { restart?: string };
  };
  const restartOf = (name: string) => raw.services[name]?.restart ?? raw["x-rlmesh-service"]?.restart;
  for (const name of ["redis", "api", "rollout", "learner", "executor", "prometheus"]) {
    assert.match(restartOf(name) ?? "", /^(always|unless-stopped)$/, `${name} restarts when it exits`);
  }
  const probes: Record<string, string> = {
    api: "127.0.0.1:50051",
    rollout: "127.0.0.1:50061",
    learner: "127.0.0.1:50071",
    executor: "http://127.0.0.1:9464/healthz",
  };
  for (const [name, target] of Object.entries(probes)) {
    const testCmd = (raw.services[name]?.healthcheck?.test ?? []).join(" ");
    assert.ok(testCmd.includes(target), `${name}'s healthcheck probes ${target}: ${testCmd}`);
  }
});
