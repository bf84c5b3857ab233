/** Decode traces: the sample shape, order correlation, validation and the HTML replay page. */
export * from "./trace-sample.js";
export * from "./render-html.js";
