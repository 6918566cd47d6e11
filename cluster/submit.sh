#!/usr/bin/env bash
# Submit the scoring job to a running Ray cluster (`ray up cluster/ray-cluster.yaml`, or any head).
#   RAY_ADDRESS=http://HEAD:8265 OUT=s3://bucket/runs/x.zarr cluster/submit.sh [extra jobs.score flags]
# ACTORS (default 2) replicas on DEVICE (default cuda: GPU actors are asked for even while the
# autoscaler has no GPU worker up; DEVICE=auto or cpu on a CPU-only cluster).
# The driver runs on the head and joins the cluster with `--address auto` (the cluster Ray names in
# the job's RAY_ADDRESS; without it the driver would start a cluster of its own); the store must be
# on object storage for a multi-node cluster. Not run against a cloud from here (tested on loopback).
set -euo pipefail
: "${RAY_ADDRESS:?set RAY_ADDRESS to the dashboard of the head, e.g. http://127.0.0.1:8265}"
: "${OUT:?set OUT to the store URL, e.g. s3://bucket/runs/chatterbot.zarr}"
PYTHON="${PYTHON:-python}"
exec ray job submit --address "$RAY_ADDRESS" \
  --runtime-env-json '{"env_vars": {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}}' \
  -- "$PYTHON" -m jobs.score --address auto --out "$OUT" --actors "${ACTORS:-2}" --device "${DEVICE:-cuda}" \
  --no-progress "$@"
