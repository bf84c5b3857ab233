"""The generated protobuf messages and gRPC stubs of proto/rlmesh/v1 (see gen_stubs.sh)."""
from ._gen.rlmesh.v1 import (  # noqa: F401
    common_pb2,
    jobs_pb2,
    jobs_pb2_grpc,
    learner_pb2,
    learner_pb2_grpc,
    reward_pb2,
    rollout_pb2,
    rollout_pb2_grpc,
)
