export * from "./infill-rows.js";
