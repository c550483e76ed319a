#!/usr/bin/env bash
# Issue 5's GPU measurements, in two commands that each fit a 10-minute device run.
#
# The device machine has JAX, Flax, optax, NumPy and Pillow but not Kedro, so everything here
# runs the pure core from src/ (PYTHONPATH=src). The CIFAR-10 archive must travel with the
# working tree: copy it into a git-ignored folder first and carry that folder, e.g.
#
#   mkdir -p .data && cp ../shared/datasets/cifar10-jpeg.tar.gz .data/   # .data/ is ignored
#   device run (carry [".data"]):  bash benchmarks/gpu_session.sh bench
#   device run (carry [".data"]):  bash benchmarks/gpu_session.sh study
#
# Results land in $OUT (the device tool brings that folder back) or ./gpu_results.
#   bench: the TF32 noise floor, then throughput of the paper-size measured step (>= 500
#          every-step measured steps) at "highest" and at "default" (TF32) precision, then the
#          seed-style ratio at the CPU-size config.
#   study: the 39-epoch baseline + candidate run, both protocols every MEASURE_EVERY steps.
# GPU_SMOKE=1 shrinks every run (for a check on a CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT_DIR="${OUT:-$PWD/gpu_results}"
mkdir -p "$OUT_DIR"
PYTHON="${PYTHON:-python3}"
DATA="${DATA:-.data/cifar10-jpeg.tar.gz}"
MEASURE_EVERY="${MEASURE_EVERY:-50}"

if [[ "${GPU_SMOKE:-0}" == 1 ]]; then
  CONFIG=test; CPU_CONFIG=test; STEPS=2; REPEATS=2; FLOOR_STEPS=1
  STUDY_ARGS=(--max-steps 3 --width 0.0625 --train-size 500 --test-size 100)
else
  CONFIG=paper; CPU_CONFIG=cpu; STEPS=50; REPEATS=10; FLOOR_STEPS=3
  STUDY_ARGS=()
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PYTHON" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} | tee "$OUT_DIR/environment.txt"

case "${1:-}" in
  bench)
    "$PYTHON" benchmarks/precision_noise_floor.py --config "$CONFIG" --steps "$FLOOR_STEPS" \
      --precisions highest default tensorfloat32 bfloat16 | tee "$OUT_DIR/noise_floor.txt"
    for precision in highest default; do
      "$PYTHON" benchmarks/bench_training.py --config "$CONFIG" --steps "$STEPS" \
        --repeats "$REPEATS" --no-reference --matmul-precision "$precision" \
        | tee "$OUT_DIR/bench_${CONFIG}_${precision}.txt"
    done
    "$PYTHON" benchmarks/bench_training.py --config "$CPU_CONFIG" --steps 20 --repeats 3 \
      | tee "$OUT_DIR/bench_${CPU_CONFIG}_reference.txt"
    ;;
  study)
    [[ -e "$DATA" ]] || { echo "no CIFAR-10 archive at $DATA: copy ../shared/datasets/cifar10-jpeg.tar.gz to .data/ and carry .data" >&2; exit 2; }
    "$PYTHON" benchmarks/paper_run.py --data "$DATA" --measure-every "$MEASURE_EVERY" \
      --matmul-precision "${PRECISION:-highest}" "${STUDY_ARGS[@]}" \
      --out "$OUT_DIR/paper_run.json" 2>&1 | tee "$OUT_DIR/paper_run.log"
    ;;
  *)
    echo "usage: bash benchmarks/gpu_session.sh bench|study" >&2; exit 2 ;;
esac
