export * from "./canonical-row.js";
export * from "./dataset-error.js";
export * from "./humaneval.js";
export * from "./mbpp.js";
export * from "./livecodebench.js";
export * from "./rlmesh-row.js";
export * from "./load-dataset.js";
