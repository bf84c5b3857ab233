// Message types of the rlmesh protos, re-exported under short names. `X` is what a sender may
// give (fields optional), `XOut` what a receiver gets (defaults filled in).
export type { Job as JobIn, Job__Output as Job } from "./gen/rlmesh/v1/Job.js";
export type { JobSpec as JobSpecIn, JobSpec__Output as JobSpec } from "./gen/rlmesh/v1/JobSpec.js";
export type { JobEvent as JobEventIn, JobEvent__Output as JobEvent } from "./gen/rlmesh/v1/JobEvent.js";
export type { JobState__Output as JobState } from "./gen/rlmesh/v1/JobState.js";
export type { DatasetSpec__Output as DatasetSpec } from "./gen/rlmesh/v1/DatasetSpec.js";
export type { DecodingParams as DecodingParamsIn, DecodingParams__Output as DecodingParams } from "./gen/rlmesh/v1/DecodingParams.js";
export type { GrpoParams as GrpoParamsIn, GrpoParams__Output as GrpoParams } from "./gen/rlmesh/v1/GrpoParams.js";
export type { SandboxLimits__Output as SandboxLimits } from "./gen/rlmesh/v1/SandboxLimits.js";
export type { RewardJob__Output as RewardJob } from "./gen/rlmesh/v1/RewardJob.js";
export type { RewardResult__Output as RewardResult } from "./gen/rlmesh/v1/RewardResult.js";
export type { GenerateRequest__Output as GenerateRequest, GenerateRequest as GenerateRequestIn } from "./gen/rlmesh/v1/GenerateRequest.js";
export type {
  GenerateResponse__Output as GenerateResponse,
  GenerateResponse as GenerateResponseIn,
} from "./gen/rlmesh/v1/GenerateResponse.js";
export type { Sample__Output as Sample, Sample as SampleIn } from "./gen/rlmesh/v1/Sample.js";
export type { WeightChunk__Output as WeightChunk, WeightChunk as WeightChunkIn } from "./gen/rlmesh/v1/WeightChunk.js";
export type {
  UpdateWeightsResponse__Output as UpdateWeightsResponse,
  UpdateWeightsResponse as UpdateWeightsResponseIn,
} from "./gen/rlmesh/v1/UpdateWeightsResponse.js";
export type { ModelInfo__Output as ModelInfo, ModelInfo as ModelInfoIn } from "./gen/rlmesh/v1/ModelInfo.js";
export type {
  TrainStepRequest__Output as TrainStepRequest,
  TrainStepRequest as TrainStepRequestIn,
} from "./gen/rlmesh/v1/TrainStepRequest.js";
export type {
  TrainStepResponse__Output as TrainStepResponse,
  TrainStepResponse as TrainStepResponseIn,
} from "./gen/rlmesh/v1/TrainStepResponse.js";
export type {
  ReportEvalRequest__Output as ReportEvalRequest,
  ReportEvalRequest as ReportEvalRequestIn,
} from "./gen/rlmesh/v1/ReportEvalRequest.js";
export type {
  ReportEvalResponse__Output as ReportEvalResponse,
  ReportEvalResponse as ReportEvalResponseIn,
} from "./gen/rlmesh/v1/ReportEvalResponse.js";
export type {
  FinalizeWeightsRequest__Output as FinalizeWeightsRequest,
  FinalizeWeightsRequest as FinalizeWeightsRequestIn,
} from "./gen/rlmesh/v1/FinalizeWeightsRequest.js";
export type {
  FinalizeWeightsResponse__Output as FinalizeWeightsResponse,
  FinalizeWeightsResponse as FinalizeWeightsResponseIn,
} from "./gen/rlmesh/v1/FinalizeWeightsResponse.js";
export type { StartJobRequest__Output as StartJobRequest, StartJobRequest as StartJobRequestIn } from "./gen/rlmesh/v1/StartJobRequest.js";
export type { StartJobResponse__Output as StartJobResponse, StartJobResponse as StartJobResponseIn } from "./gen/rlmesh/v1/StartJobResponse.js";
export type { InitFrom__Output as InitFrom, InitFrom as InitFromIn } from "./gen/rlmesh/v1/InitFrom.js";
export type { TrainSample__Output as TrainSample, TrainSample as TrainSampleIn } from "./gen/rlmesh/v1/TrainSample.js";
export type { TrainStats__Output as TrainStats, TrainStats as TrainStatsIn } from "./gen/rlmesh/v1/TrainStats.js";
export type { LearnerStatus__Output as LearnerStatus, LearnerStatus as LearnerStatusIn } from "./gen/rlmesh/v1/LearnerStatus.js";
export type { CheckpointResponse__Output as CheckpointResponse } from "./gen/rlmesh/v1/CheckpointResponse.js";
export type { JobServiceClient } from "./gen/rlmesh/v1/JobService.js";
export type { RolloutServiceClient } from "./gen/rlmesh/v1/RolloutService.js";
export type { LearnerServiceClient } from "./gen/rlmesh/v1/LearnerService.js";
export type { JobServiceHandlers } from "./gen/rlmesh/v1/JobService.js";
export type { RolloutServiceHandlers } from "./gen/rlmesh/v1/RolloutService.js";
export type { LearnerServiceHandlers } from "./gen/rlmesh/v1/LearnerService.js";
