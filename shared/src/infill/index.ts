export * from "./infill-rows.js";
export * from "./python-shape.js";
