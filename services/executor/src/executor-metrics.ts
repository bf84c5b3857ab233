import { Counter, Gauge, Histogram, type Registry } from "prom-client";

/** The executor's Prometheus metrics, registered on the service registry. */
export interface ExecutorMetrics {
  executions: Counter<"status">;
  duration: Histogram<"status">;
  queueDepth: Gauge;
  queueWait: Histogram;
  poolSize: Gauge;
  poolBusy: Gauge;
}

/** `depth` is read at scrape time (e.g. waiting + delayed jobs of the queue). */
export function createExecutorMetrics(registry: Registry, depth?: () => Promise<number>): ExecutorMetrics {
  return {
    executions: new Counter({
      name: "rlmesh_sandbox_executions_total",
      help: "Candidates scored, by final status",
      labelNames: ["status"],
      registers: [registry],
    }),
    duration: new Histogram({
      name: "rlmesh_sandbox_execution_duration_seconds",
      help: "Time to score one candidate (sandbox round trip)",
      labelNames: ["status"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [registry],
    }),
    queueDepth: new Gauge({
      name: "rlmesh_queue_depth",
      help: "Reward jobs waiting (waiting + delayed + prioritized)",
      registers: [registry],
      async collect() {
        if (depth) this.set(await depth());
      },
    }),
    queueWait: new Histogram({
      name: "rlmesh_queue_wait_seconds",
      help: "Time a reward job waited in the queue before its first attempt started",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300],
      registers: [registry],
    }),
    poolSize: new Gauge({ name: "rlmesh_sandbox_pool_size", help: "Live warm sandbox containers", registers: [registry] }),
    poolBusy: new Gauge({ name: "rlmesh_sandbox_pool_busy", help: "Sandbox containers running a candidate", registers: [registry] }),
  };
}
