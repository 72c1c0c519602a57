#!/usr/bin/env bash
# The CUDA paths on a GPU machine, in under 10 minutes: every notebook preset trains a few hundred steps through
# the real command (precision=auto → bf16-mixed on Ampere+, channels_last, data resident on the GPU, cuDNN
# autotuning), DDP runs when there are several GPUs, then the throughput benchmark.
#
#   bash benchmarks/gpu_check.sh [DATA_ROOT] [OUT_DIR]     # DATA_ROOT defaults to ../shared/datasets
#
# Writes OUT_DIR/gpu_check.log (everything) and OUT_DIR/throughput.json, prints a summary per step.
set -uo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
OUT=${2:-outputs/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: > "$LOG"

step() {  # step <name> <command...>: run, time, report ok/failed without stopping the script
  local name=$1; shift
  local start=$SECONDS
  if "$@" >> "$LOG" 2>&1; then echo "ok      $name ($((SECONDS - start)) s)"; else echo "FAILED  $name ($((SECONDS - start)) s, see $LOG)"; fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$LOG"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'bf16', torch.cuda.is_bf16_supported())" | tee -a "$LOG"

declare -A ROOT=([horse_cnn]=cifar10-jpeg [cifar10_model_s]=cifar10-jpeg [fer_custom_cnn]=fer2013)
for preset in horse_cnn cifar10_model_s fashion_dense fashion_cnn_final mnist_dense_mse mnist_cnn fer_custom_cnn; do
  step "train $preset (2 epochs, cuda, precision=auto)" \
    $PY -m lit_vision.train experiment=$preset data.root="$DATA/${ROOT[$preset]:-}" accelerator=cuda \
      trainer.max_epochs=2 hydra.run.dir="$OUT/runs/$preset"
done

GPUS=$($PY -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -gt 1 ]; then
  step "DDP on $GPUS GPUs (cifar10_model_s, 2 epochs)" \
    $PY -m lit_vision.train experiment=cifar10_model_s data.root="$DATA/cifar10-jpeg" accelerator=cuda trainer=ddp \
      trainer.devices="$GPUS" trainer.max_epochs=2 hydra.run.dir="$OUT/runs/ddp"
fi

step "throughput benchmark" $PY benchmarks/throughput.py --data-root "$DATA" --steps 50 --warmup 10 --repeats 3 \
  --json "$OUT/throughput.json"
grep -h "test/acc\|\"epochs_trained\"\|train_seconds" "$OUT"/runs/*/metrics.json >> "$LOG" 2>/dev/null
echo "log: $LOG"
