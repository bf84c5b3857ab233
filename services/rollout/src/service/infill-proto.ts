/**
 * Mapping between RolloutService.Infill's messages (@grpc/proto-loader objects) and the
 * runtime's infill types. Unset proto3 optional fields mean "worker default".
 */
import type { InfillRequest__Output as InfillRequest } from "@rlmesh/shared/gen/rlmesh/v1/InfillRequest";
import type { InfillResponse as InfillResponseIn } from "@rlmesh/shared/gen/rlmesh/v1/InfillResponse";
import type { InfillParamsInput } from "../decoding/infill-params.js";
import type { InfillRequestItem, InfillRequestOptions, InfillResult } from "../runtime/infill-requests.js";
import { decodeParamsFromProto } from "./proto-mapping.js";

export type { InfillRequest, InfillResponseIn };

export function infillItemsFromProto(req: InfillRequest): InfillRequestItem[] {
  return req.items.map((it, i) => ({
    itemId: it.id || String(i),
    prefix: it.prefix,
    suffix: it.suffix,
    ...(it.initialLength !== undefined && it.initialLength !== null ? { initialLength: it.initialLength } : {}),
    ...(it.maxLength !== undefined && it.maxLength !== null ? { maxLength: it.maxLength } : {}),
    // Unset (0) = one sample per item.
    samples: req.samplesPerItem || 1,
  }));
}

export function infillOptionsFromProto(req: InfillRequest): InfillRequestOptions {
  const params: InfillParamsInput = { ...decodeParamsFromProto(req.params) };
  if (req.params?.trace === true) params.trace = true;
  if (req.eosCut !== undefined && req.eosCut !== null) params.eos_cut = req.eosCut;
  if (req.expandCut !== undefined && req.expandCut !== null) params.expand_cut = req.expandCut;
  if (req.lengthSearch !== undefined && req.lengthSearch !== null) params.length_search = req.lengthSearch;
  if (req.syntaxCheck !== undefined && req.syntaxCheck !== null) params.syntax_check = req.syntaxCheck;
  return {
    ...(req.variableLength !== undefined && req.variableLength !== null ? { variable: req.variableLength } : {}),
    params,
  };
}

export function infillResponseToProto(res: InfillResult, workerId: string): InfillResponseIn {
  return {
    samples: res.samples.map((s) => ({
      itemId: s.itemId,
      sampleIndex: s.sampleIndex,
      middleText: s.middleText,
      middleTokenIds: s.middleTokenIds,
      length: s.middleTokenIds.length,
      policyVersion: s.policyVersion,
      policyJobId: s.policyJobId,
      nfe: s.nfe,
      prefixTokenIds: s.prefixTokenIds,
      suffixTokenIds: s.suffixTokenIds,
      ...(s.commitSteps ? { commitSteps: s.commitSteps } : {}),
      ...(s.events ? { events: s.events.map((e) => ({ step: e.step, kind: e.kind, position: e.position })) } : {}),
      ...(s.lengthSearch
        ? { lengthCandidates: s.lengthSearch.candidates, lengthScreenedOut: s.lengthSearch.screenedOut, variableLength: s.lengthSearch.variableLength }
        : {}),
    })),
    workerId,
    policyVersion: res.policyVersion,
    policyJobId: res.policyJobId,
    seconds: res.seconds,
  };
}
