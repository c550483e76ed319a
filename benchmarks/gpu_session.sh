#!/usr/bin/env bash
# Issue 5's GPU measurements, as parts that each fit well inside a 10-minute device run.
#
# The device machine has JAX, Flax, optax, NumPy and Pillow but not Kedro, so everything here
# runs the pure core from src/ (PYTHONPATH=src). The CIFAR-10 archive must travel with the
# working tree for `study`: copy it into the git-ignored folder .data/ and carry that folder:
#
#   mkdir -p .data && cp ../shared/datasets/cifar10-jpeg.tar.gz .data/
#   device run (carry [".data"]):  bash benchmarks/gpu_session.sh floor bench-high
#   device run (carry [".data"]):  bash benchmarks/gpu_session.sh study
#
# Parts, run in the order given:
#   floor            precision noise floor of the ICS at paper size (highest, high, default,
#                    tensorfloat32, bfloat16)
#   bench-PRECISION  paper-size throughput, plain and measured (both presets, every step),
#                    550 measured steps after warm-up, at that matmul precision
#   reference        the seed-style ratio and agreement check at the CPU-size config
#   curvature        what a curvature measurement (top Hessian eigenvalue on 4,096 probe images,
#                    batch sharpness) costs at paper size, against a measured step
#   study            the study of conf/base/globals.yml (39 epochs), baseline + candidate,
#                    both protocols every MEASURE_EVERY (default 50) steps, at PRECISION
#                    (default: the YAML's, highest), the seeds SEEDS (default: the YAML's
#                    seed) trained together with train_seeds (vmapped over the seed axis),
#                    curvature every CURVATURE_EVERY steps (default: the YAML's, 1000; 0: off):
#                    paper_run.json (final accuracies, timings) and paper_run.npz (traces)
# Results land in $OUT (the device tool brings that folder back) or ./gpu_results.
# GPU_SMOKE=1 shrinks every part (a check on a CPU; two seeds in `study`).
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
  SEEDS="${SEEDS:-0 1}"; CURVATURE_EVERY="${CURVATURE_EVERY:-0}"  # 500 images < the probe set
else
  CONFIG=paper; CPU_CONFIG=cpu; STEPS=50; REPEATS=10; FLOOR_STEPS=3
  STUDY_ARGS=()
fi

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PYTHON" -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
} | tee "$OUT_DIR/environment.txt"

[[ $# -gt 0 ]] || { echo "usage: bash benchmarks/gpu_session.sh floor|bench-PRECISION|reference|study ..." >&2; exit 2; }
for part in "$@"; do
  echo "=== $part ($(date -u +%H:%M:%S))"
  case "$part" in
    floor)
      "$PYTHON" benchmarks/precision_noise_floor.py --config "$CONFIG" --steps "$FLOOR_STEPS" \
        --precisions highest high default tensorfloat32 bfloat16 | tee "$OUT_DIR/noise_floor.txt"
      ;;
    bench-*)
      precision="${part#bench-}"
      "$PYTHON" benchmarks/bench_training.py --config "$CONFIG" --steps "$STEPS" \
        --repeats "$REPEATS" --no-reference --matmul-precision "$precision" \
        | tee "$OUT_DIR/bench_${CONFIG}_${precision}.txt"
      ;;
    reference)
      "$PYTHON" benchmarks/bench_training.py --config "$CPU_CONFIG" --steps 20 --repeats 3 \
        | tee "$OUT_DIR/bench_${CPU_CONFIG}_reference.txt"
      ;;
    curvature)
      "$PYTHON" benchmarks/bench_curvature.py --config "$CONFIG" --repeats "$((REPEATS < 3 ? REPEATS : 3))" \
        ${GPU_SMOKE:+$( [[ "${GPU_SMOKE}" == 1 ]] && echo --probe-size 64 )} \
        | tee "$OUT_DIR/curvature_${CONFIG}.txt"
      ;;
    study)
      [[ -e "$DATA" ]] || { echo "no CIFAR-10 archive at $DATA: copy ../shared/datasets/cifar10-jpeg.tar.gz to .data/ and carry .data" >&2; exit 2; }
      read -r -a seeds <<< "${SEEDS:-}"
      "$PYTHON" benchmarks/paper_run.py --data "$DATA" --measure-every "$MEASURE_EVERY" \
        ${PRECISION:+--precision "$PRECISION"} ${seeds[@]+--seeds "${seeds[@]}"} \
        ${CURVATURE_EVERY:+--curvature-every "$CURVATURE_EVERY"} \
        ${STUDY_ARGS[@]+"${STUDY_ARGS[@]}"} --out "$OUT_DIR" 2>&1 | tee "$OUT_DIR/paper_run.log"
      ;;
    *)
      echo "unknown part '$part': use floor, bench-PRECISION (e.g. bench-highest), reference, curvature or study" >&2
      exit 2 ;;
  esac
done
