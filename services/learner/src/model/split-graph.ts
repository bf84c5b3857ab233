import { LOGITS, INPUT_IDS, modelBytes, parseModel } from "@rlmesh/shared/model/index";
import { valueInfo, valueInfoElemType } from "@rlmesh/shared/model/onnx-proto";

type ModelProto = ReturnType<typeof parseModel>;
type NodeProto = NonNullable<ModelProto["graph"]>["node"][number];

/**
 * The learner's graph without its two vocabulary-wide ends, so JaxPolicy can run them itself:
 *
 * - the token embedding — `Gather(E, input_ids)`, or `MatMul(Cast(Equal(Unsqueeze(input_ids),
 *   vocab_ids)), E)` (a one-hot matmul) — becomes a graph input that JaxPolicy fills with `take(E, input_ids)`. The result is the
 *   same numbers (one non-zero term per sum); its gradient is a scatter-add instead of a one-hot
 *   matmul, which jax-js fused with the layer-0 norm backward and recomputed per vocabulary entry
 *   (≈ 2/3 of a whole TrainStep on the demo batch, see `bench learner --profile`);
 * - the LM head `MatMul(h, Transpose(W))` or `MatMul(h, W)` is dropped: the graph returns the
 *   final hidden state `h`, and JaxPolicy applies the head only at the positions whose
 *   log-probabilities are read (the masked response positions of each pass).
 *
 * Returns null when the graph does not have this shape (JaxPolicy then runs the whole graph).
 */
export interface SplitGraph {
  /** The body: inputs are the original ones with `embeddingOutput` instead of the one-hot path. */
  bodyBytes: Uint8Array;
  /** Name of the embedding table weight [V, D]. */
  embeddingWeight: string;
  /** Name of the body's input that takes the embedded tokens [B, T, D]. */
  embeddingOutput: string;
  /** Name of the body's output: the hidden state the head multiplies [B, T, D]. */
  hiddenOutput: string;
  /** The head's weight and whether the graph transposed it (logits = h·Wᵀ when true). */
  headWeight: string;
  headTransposed: boolean;
  /** Whether the body still reads input_ids (e.g. for its shape) and so takes it as an input. */
  bodyTakesInputIds: boolean;
  /** Weights the body no longer reads (not to be passed to it). */
  weightsNotInBody: string[];
}

export function splitGraph(differentiable: ModelProto, weightNames: readonly string[]): SplitGraph | null {
  // Work on a copy: the caller keeps the original.
  const model = parseModel(modelBytes(differentiable));
  const graph = model.graph;
  if (!graph) return null;
  const weights = new Set(weightNames);
  const producer = new Map<string, NodeProto>();
  for (const n of graph.node) for (const o of n.output) producer.set(o, n);
  const consumers = (name: string) => graph.node.filter((n) => n.input.includes(name));

  // Head: the node producing the logits.
  const head = producer.get(LOGITS);
  if (!head || head.opType !== "MatMul" || head.input.length !== 2) return null;
  const [hidden, headIn] = head.input as [string, string];
  let headWeight: string;
  let headTransposed: boolean;
  const removed = new Set<NodeProto>([head]);
  if (weights.has(headIn)) {
    headWeight = headIn;
    headTransposed = false;
  } else {
    const t = producer.get(headIn);
    if (!t || t.opType !== "Transpose" || !weights.has(t.input[0]!)) return null;
    const perm = t.attribute.find((a) => a.name === "perm")?.ints.map(Number);
    if (perm && !(perm.length === 2 && perm[0] === 1 && perm[1] === 0)) return null;
    if (consumers(headIn).length !== 1) return null;
    headWeight = t.input[0]!;
    headTransposed = true;
    removed.add(t);
  }

  // Embedding: a vocabulary-sized `Gather(E, input_ids, axis 0)` (imported families), or the
  // one-hot MatMul(Cast(Equal(Unsqueeze(input_ids, ·), ·)), E). Either way JaxPolicy feeds
  // take(E, input_ids), whose gradient is a scatter-add into E's rows.
  const gather = graph.node.find(
    (n) =>
      n.opType === "Gather" &&
      weights.has(n.input[0] ?? "") &&
      n.input[1] === INPUT_IDS &&
      Number(n.attribute.find((a) => a.name === "axis")?.i ?? 0) === 0,
  );
  let embed: NodeProto;
  let embeddingWeight: string;
  if (gather) {
    embed = gather;
    embeddingWeight = gather.input[0]!;
    removed.add(gather);
  } else {
    const mm = graph.node.find((n) => {
      if (n.opType !== "MatMul" || !weights.has(n.input[1] ?? "")) return false;
      const cast = producer.get(n.input[0]!);
      const eq = cast?.opType === "Cast" ? producer.get(cast.input[0]!) : undefined;
      const unsq = eq?.opType === "Equal" ? producer.get(eq.input[0]!) : undefined;
      return unsq?.opType === "Unsqueeze" && unsq.input[0] === INPUT_IDS;
    });
    if (!mm) return null;
    embed = mm;
    const cast = producer.get(embed.input[0]!)!;
    const eq = producer.get(cast.input[0]!)!;
    const unsq = producer.get(eq.input[0]!)!;
    // The chain's intermediates must feed nothing else.
    for (const [n, next] of [
      [unsq, eq],
      [eq, cast],
      [cast, embed],
    ] as const) {
      const users = consumers(n.output[0]!);
      if (users.length !== 1 || users[0] !== next) return null;
    }
    for (const n of [embed, cast, eq, unsq]) removed.add(n);
    embeddingWeight = embed.input[1]!;
  }
  const embeddingOutput = embed.output[0]!;

  const logitsInfo = graph.output.find((v) => v.name === LOGITS);
  const elemType = logitsInfo ? valueInfoElemType(logitsInfo) : null;
  if (elemType === null) return null;
  graph.node = graph.node.filter((n) => !removed.has(n));
  const used = new Set(graph.node.flatMap((n) => n.input));
  const weightsNotInBody = weightNames.filter((w) => !used.has(w));
  const bodyTakesInputIds = used.has(INPUT_IDS);
  graph.input = [
    ...graph.input.filter((v) => !weightsNotInBody.includes(v.name) && (v.name !== INPUT_IDS || bodyTakesInputIds)),
    valueInfo(embeddingOutput, elemType, ["batch", "sequence", "d_model"]),
  ];
  graph.output = [valueInfo(hidden, elemType, ["batch", "sequence", "d_model"])];
  return {
    bodyBytes: modelBytes(model),
    embeddingWeight,
    embeddingOutput,
    hiddenOutput: hidden,
    headWeight,
    headTransposed,
    bodyTakesInputIds,
    weightsNotInBody,
  };
}
