#!/usr/bin/env bash
# Issue 5's GPU measurements, in stages that each fit one call of the device tool (10 minutes a command).
#
# GPU images here have jax, flax, optax, orbax, torch, matplotlib, tqdm and tensorboard, but no TensorFlow, clu or
# ml_collections; dl4cv_jax runs there with data.pipeline=device (see README "Without TensorFlow"). Prepare on
# this machine, once (both folders are git-ignored; name them in the device tool's `carry`):
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       -d .whl ml-collections==1.1.0
#   mkdir -p .data && cp ../shared/data/cifar10_jpeg.tar.gz .data/
# Then on the device machine, one stage per call (extra arguments go to the stage's command):
#   bash benchmarks/gpu_session.sh env          # versions and devices
#   bash benchmarks/gpu_session.sh steps        # JAX train step, 4 models x float32/bf16 (ResNet-50 at batch 256)
#   bash benchmarks/gpu_session.sh compare      # JAX vs PyTorch (eager and torch.compile), ResNet-50 and ResNet-20
#   bash benchmarks/gpu_session.sh fast_cifar   # configs/fast_cifar.py on the CIFAR-10 JPEGs: time and accuracy
#   bash benchmarks/gpu_session.sh scan         # data.scan_epoch against one dispatch per step
# Tables, logs and run files go to $OUT (the device tool's output folder; ./gpu_out elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

cifar10_dir() {
  local dir=${CIFAR10_DIR:-$HOME/.cache/dl4cv/cifar10}
  if [ ! -d "$dir/train" ]; then
    local archive=.data/cifar10_jpeg.tar.gz
    [ -f "$archive" ] || archive=../shared/data/cifar10_jpeg.tar.gz
    mkdir -p "$dir" && tar -xzf "$archive" -C "$dir"
  fi
  echo "$dir"
}

stage=${1:?"name a stage: env, steps, compare, fast_cifar or scan"}
shift
case "$stage" in
  env)
    (nvidia-smi || echo "no nvidia-smi") | tee "$OUT/env.txt"
    "$PYTHON" -c "import sys, jax, flax, optax, torch, ml_collections, PIL; print(sys.version); \
print('jax', jax.__version__, jax.devices()); print('flax', flax.__version__, 'optax', optax.__version__, \
'torch', torch.__version__, 'pillow', PIL.__version__)" | tee -a "$OUT/env.txt"
    ;;
  steps)
    "$PYTHON" benchmarks/train_step.py --models lenet resnet20_cifar resnet18_cifar resnet50 \
      --precisions float32 bfloat16 "$@" | tee "$OUT/train_step.md"
    ;;
  compare)
    # The system allocator: main.py (dl4cv_jax.process.configure_process) takes jemalloc on CPU-only machines only,
    # and the GPU images need not have it. config.backend stays 'auto', which is 'xla' on a GPU.
    "$PYTHON" benchmarks/compare_frameworks.py --models resnet50 resnet20_cifar --precisions bfloat16 float32 \
      --allocators system --compile "$@" | tee "$OUT/compare_frameworks.md"
    ;;
  fast_cifar)
    dir=$(cifar10_dir)
    workdir=${WORKDIR:-/tmp/fast_cifar}
    rm -rf "$workdir"
    start=$(date +%s.%N)
    "$PYTHON" main.py --config=configs/fast_cifar.py --workdir="$workdir" --config.data.dir="$dir" "$@" \
      2>&1 | tee "$OUT/fast_cifar.log"
    end=$(date +%s.%N)
    echo "wall seconds (load, compile, train, test): $("$PYTHON" -c "print(round($end - $start, 1))")" \
      | tee -a "$OUT/fast_cifar.log"
    cp "$workdir/history.csv" "$workdir/test_metrics.json" "$OUT/"
    ;;
  scan)
    "$PYTHON" benchmarks/epoch_program.py --models lenet cnn --batch-sizes 128 512 "$@" | tee "$OUT/epoch_program.md"
    ;;
  *)
    echo "unknown stage '$stage'; choose one of: env, steps, compare, fast_cifar, scan" >&2
    exit 2
    ;;
esac
