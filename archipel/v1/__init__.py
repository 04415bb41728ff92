"""Generated wire modules (protobuf and gRPC) of the archipel.v1 API. Do not edit by hand:
regenerate with ``python scripts/gen_protos.py``; a test fails when they are stale."""
