// Kubernetes manifests (deploy/k8s): every object validates against the Kubernetes object
// schema (kubernetes-models' generated validators, offline), the kustomization lists every
// file, and the objects fit together (selectors, ports, ConfigMap and PVC references).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@rlmesh/shared/repo-paths";
import { loadYaml, loadYamlDocuments } from "./deploy-yaml.js";

const K8S_DIR = join(REPO_ROOT, "deploy", "k8s");
const NAMESPACE = "rlmesh";
/** Package with a generated schema validator per Kubernetes kind (see docs/deploy.md, "Tests"). */
const MODELS_PACKAGE = "kubernetes-models";
const MODELS_VERSION = "4.5.1";

interface Container {
  name: string;
  image?: string;
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  envFrom?: { configMapRef?: { name: string } }[];
  env?: { name: string; value?: string; valueFrom?: { configMapKeyRef?: { name: string; key: string } } }[];
  volumeMounts?: { name: string; mountPath: string }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
}
interface Probe {
  httpGet?: { port: number | string };
  tcpSocket?: { port: number | string };
  grpc?: { port: number };
}
interface PodSpec {
  containers: Container[];
  initContainers?: Container[];
  volumes?: { name: string; persistentVolumeClaim?: { claimName: string } }[];
}
interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  spec?: {
    selector?: { matchLabels?: Record<string, string> } | Record<string, string>;
    template?: { metadata?: { labels?: Record<string, string> }; spec: PodSpec };
    ports?: { name?: string; port: number; targetPort?: number | string }[];
    volumeClaimTemplates?: { metadata: { name: string } }[];
  };
  data?: Record<string, string>;
}

const manifestFiles = readdirSync(K8S_DIR)
  .filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml")
  .sort();

async function loadObjects(): Promise<{ file: string; obj: K8sObject }[]> {
  const out: { file: string; obj: K8sObject }[] = [];
  for (const file of manifestFiles) {
    for (const obj of await loadYamlDocuments(readFileSync(join(K8S_DIR, file), "utf8"))) out.push({ file, obj: obj as K8sObject });
  }
  return out;
}

/** kubernetes-models/<group>/<version>/<Kind>; core objects live under v1/. */
function modelPath(apiVersion: string, kind: string): string {
  return `${MODELS_PACKAGE}/${apiVersion}/${kind}`;
}

async function validateAgainstSchema(obj: K8sObject): Promise<void> {
  let mod: Record<string, new (data: unknown) => { validate(): void }>;
  try {
    mod = (await import(modelPath(obj.apiVersion, obj.kind))) as typeof mod;
  } catch (err) {
    throw new Error(
      `cannot load the schema of ${obj.apiVersion} ${obj.kind} from ${MODELS_PACKAGE} (npm install -w test ${MODELS_PACKAGE}@${MODELS_VERSION}): ${(err as Error).message}`,
    );
  }
  const Model = mod[obj.kind];
  assert.ok(Model, `${MODELS_PACKAGE} has no model ${obj.kind}`);
  new Model(obj).validate();
}

const workloads = (objs: K8sObject[]) => objs.filter((o) => o.kind === "Deployment" || o.kind === "StatefulSet");
const podLabels = (o: K8sObject) => o.spec?.template?.metadata?.labels ?? {};
const allContainers = (o: K8sObject) => [...(o.spec?.template?.spec.initContainers ?? []), ...(o.spec?.template?.spec.containers ?? [])];
const matches = (selector: Record<string, string>, labels: Record<string, string>) =>
  Object.keys(selector).length > 0 && Object.entries(selector).every(([k, v]) => labels[k] === v);

test("the kustomization lists every manifest file and sets the namespace", async () => {
  const k = (await loadYaml(readFileSync(join(K8S_DIR, "kustomization.yaml"), "utf8"))) as { namespace: string; resources: string[] };
  assert.equal(k.namespace, NAMESPACE);
  assert.deepEqual(k.resources.slice().sort(), manifestFiles);
});

test("every object validates against the Kubernetes object schema", async () => {
  const objs = await loadObjects();
  assert.ok(objs.length >= 10, `only ${objs.length} objects`);
  const errors: string[] = [];
  for (const { file, obj } of objs) {
    try {
      await validateAgainstSchema(obj);
    } catch (err) {
      errors.push(`${file}: ${obj.kind}/${obj.metadata?.name}: ${(err as Error).message}`);
    }
  }
  assert.deepEqual(errors, []);
});

test("the schema validation rejects a broken object (the check is real)", async () => {
  const broken = {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "broken" },
    spec: { replicas: "two", selector: {}, template: { spec: { containers: [{ image: "x" }] } } },
  } as unknown as K8sObject;
  await assert.rejects(validateAgainstSchema(broken), /replicas|name/);
});

test("the cluster's objects are all there: redis StatefulSet, a Deployment and Service per service, ConfigMap, checkpoints PVC", async () => {
  const objs = (await loadObjects()).map((o) => o.obj);
  const has = (kind: string, name: string) => objs.some((o) => o.kind === kind && o.metadata.name === name);
  assert.ok(has("StatefulSet", "redis") && has("Service", "redis"));
  for (const s of ["api", "rollout", "learner", "executor"]) {
    assert.ok(has("Deployment", s), `Deployment ${s}`);
    assert.ok(has("Service", s), `Service ${s}`);
  }
  assert.ok(has("ConfigMap", "rlmesh-config") && has("PersistentVolumeClaim", "checkpoints") && has("Namespace", NAMESPACE));
  for (const o of objs) if (o.kind !== "Namespace") assert.equal(o.metadata.namespace, NAMESPACE, `${o.kind}/${o.metadata.name} namespace`);
});

test("selectors, ports, ConfigMap keys and volume claims fit together", async () => {
  const objs = (await loadObjects()).map((o) => o.obj);
  const configMaps = new Map(objs.filter((o) => o.kind === "ConfigMap").map((o) => [o.metadata.name, o.data ?? {}]));
  const claims = new Set(objs.filter((o) => o.kind === "PersistentVolumeClaim").map((o) => o.metadata.name));
  for (const w of workloads(objs)) {
    const id = `${w.kind}/${w.metadata.name}`;
    const sel = (w.spec?.selector as { matchLabels?: Record<string, string> }).matchLabels ?? {};
    assert.ok(matches(sel, podLabels(w)), `${id}: selector does not match its pod labels`);
    const podSpec = w.spec!.template!.spec;
    const volumeNames = new Set([
      ...(podSpec.volumes ?? []).map((v) => v.name),
      ...(w.spec?.volumeClaimTemplates ?? []).map((v) => v.metadata.name),
    ]);
    for (const v of podSpec.volumes ?? [])
      if (v.persistentVolumeClaim)
        assert.ok(claims.has(v.persistentVolumeClaim.claimName), `${id}: PVC ${v.persistentVolumeClaim.claimName}`);
    for (const c of allContainers(w)) {
      const portNames = new Set((c.ports ?? []).map((p) => p.name));
      const portNumbers = new Set((c.ports ?? []).map((p) => p.containerPort));
      for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
        const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port ?? probe?.grpc?.port;
        if (port === undefined) continue;
        assert.ok(typeof port === "string" ? portNames.has(port) : portNumbers.has(port), `${id} ${c.name}: probe port ${port}`);
      }
      for (const e of c.envFrom ?? [])
        if (e.configMapRef) assert.ok(configMaps.has(e.configMapRef.name), `${id} ${c.name}: ConfigMap ${e.configMapRef.name}`);
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.configMapKeyRef;
        if (ref) assert.ok(configMaps.get(ref.name)?.[ref.key] !== undefined, `${id} ${c.name}: ${ref.name}.${ref.key}`);
      }
      for (const m of c.volumeMounts ?? []) assert.ok(volumeNames.has(m.name), `${id} ${c.name}: volume ${m.name}`);
    }
  }
  for (const svc of objs.filter((o) => o.kind === "Service")) {
    const selector = (svc.spec?.selector ?? {}) as Record<string, string>;
    const targets = workloads(objs).filter((w) => matches(selector, podLabels(w)));
    assert.equal(targets.length, 1, `Service ${svc.metadata.name} selects ${targets.length} workloads`);
    const ports = allContainers(targets[0]!).flatMap((c) => c.ports ?? []);
    for (const p of svc.spec?.ports ?? []) {
      const target = p.targetPort ?? p.port;
      assert.ok(
        ports.some((cp) => cp.name === target || cp.containerPort === target),
        `Service ${svc.metadata.name}: targetPort ${target}`,
      );
    }
  }
});

test("every rlmesh container runs one of the services from the one image", async () => {
  const objs = (await loadObjects()).map((o) => o.obj);
  for (const name of ["api", "rollout", "learner", "executor"]) {
    const d = objs.find((o) => o.kind === "Deployment" && o.metadata.name === name)!;
    const c = d.spec!.template!.spec.containers.find((x) => x.name === name)!;
    assert.equal(c.image, "rlmesh", `${name} image (kustomize's images: sets registry and tag)`);
    assert.deepEqual(c.args, [`services/${name}/dist/main.js`]);
    assert.ok(existsSync(join(REPO_ROOT, "services", name, "src")), `services/${name} exists`);
  }
});

test("supervision: every service pod restarts what exits, and its probes match the service (gRPC health ready, /healthz live)", async () => {
  const objects = await loadObjects();
  for (const name of ["api", "rollout", "learner", "executor"]) {
    const dep = objects.find(({ obj }) => obj.kind === "Deployment" && obj.metadata.name === name)?.obj;
    assert.ok(dep, `${name} Deployment`);
    const pod = dep.spec!.template!.spec as PodSpec & { restartPolicy?: string };
    assert.equal(pod.restartPolicy, "Always", `${name}: restartPolicy Always (a dead container is restarted with backoff)`);
    const c = pod.containers.find((x) => x.name === name)!;
    assert.ok(c.startupProbe && c.readinessProbe && c.livenessProbe, `${name}: startup, readiness and liveness probes`);
    // Liveness: the process's own /healthz on its metrics port (a wedged process is restarted).
    assert.equal((c.livenessProbe.httpGet as { path?: string } | undefined)?.path, "/healthz", `${name}: liveness is /healthz`);
    assert.equal(c.livenessProbe.httpGet?.port, "metrics", `${name}: liveness on the metrics port`);
    // Readiness: gRPC health on the service's gRPC port; the executor (a queue worker) has only /healthz.
    const grpcPort = c.ports?.find((p) => p.name === "grpc")?.containerPort;
    if (name === "executor") assert.equal(c.readinessProbe.httpGet?.port, "metrics");
    else assert.equal(c.readinessProbe.grpc?.port, grpcPort, `${name}: readiness is gRPC health on ${grpcPort}`);
  }
});
