/**
 * YAML for the deploy tests (compose output, Kubernetes manifests). js-yaml is loaded by name at
 * run time so the test package compiles without its type package; it must be a dependency of
 * the test workspace (see docs/deploy.md, "Tests").
 */
const JS_YAML = "js-yaml";

interface JsYaml {
  load(text: string): unknown;
  loadAll(text: string): unknown[];
}

async function jsYaml(): Promise<JsYaml> {
  try {
    return (await import(JS_YAML)) as JsYaml;
  } catch (err) {
    throw new Error(`the deploy tests need the npm package js-yaml (npm install -w test js-yaml@4.3.2): ${(err as Error).message}`);
  }
}

/** Every document of a (multi-document) YAML text, empty documents dropped. */
export async function loadYamlDocuments(text: string): Promise<unknown[]> {
  return (await jsYaml()).loadAll(text).filter((d) => d !== null && d !== undefined);
}

export async function loadYaml(text: string): Promise<unknown> {
  return (await jsYaml()).load(text);
}
