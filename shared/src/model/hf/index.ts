export * from "./hf-import-error.js";
export * from "./safetensors.js";
export * from "./hf-architectures.js";
export * from "./special-ids.js";
export * from "./import-hf.js";
