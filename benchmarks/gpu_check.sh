#!/usr/bin/env bash
# The CUDA paths on one GPU, self-contained: what `benchmarks/gpu_pack.sh` packed (wheels of Hydra/OmegaConf,
# Fashion-MNIST gzipped; or, with --cifar, CIFAR-10's JPEGs as one tar) is all it needs beside the checkout;
# lit_vision runs from src/ with the machine's own PyTorch, Lightning, timm, torchmetrics and torchvision (no package
# is downloaded). One call per step stays under 10 minutes; the default (fashion, throughput, photos) takes longer.
#
#   bash benchmarks/gpu_pack.sh                        # here, once: fills .whl/ and .gpu_data/ (git-ignored)
#   STEPS=fashion bash benchmarks/gpu_check.sh [OUT_DIR]  # on the GPU machine (device run, carry .whl and .gpu_data)
#   bash benchmarks/gpu_pack.sh --cifar                # here: the cifar pack instead (replaces the default one)
#   STEPS=cifar bash benchmarks/gpu_check.sh [OUT_DIR] # there, carrying that .whl and .gpu_data
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --dry-run [OUT_DIR]
#                                                      # every step, cifar included, on this CPU at a tiny size with
#                                                      # the default pack (CI runs this)
#   PRESETS="mnist_cnn fashion_dense" LIMIT_SCALE=3 ...  # optional: step 2 on these presets only (default: all
#                                                      # seven); every step's time limit times LIMIT_SCALE (default 1)
#   STEPS="photos" ...                                 # optional: only these of fashion, throughput, photos, cifar
#                                                      # (default: the first three; a dry run: all four)
#
# Steps, each under its own time limit, reported ok/FAILED without stopping the others:
#   1. fashion: fashion_best trained in full (15 epochs) on Fashion-MNIST: test accuracy and training minutes;
#   2. throughput: benchmarks/throughput.py on synthetic data for the seven notebook presets: lit_vision vs the
#      hand-written loop (NCHW, channels_last), at the precision `trainer.precision=auto` picks (bf16 on a GPU);
#      then two convolutional presets in fp32, and compiled (lit_vision's `model.compile=true` vs the compiled loop);
#      then benchmarks/step_overhead.py: Lightning's cost per optimizer step over the hand-written loop;
#   3. photos: 4,000 photos made from the carried CIFAR-10 JPEGs (benchmarks/make_photos.py), prepared into shards,
#      benchmarks/loader.py with a worker per core but one, then experiment=photo_finetune (resnet50, 224 px, random
#      init) trained 4 epochs from the shards and 4 from the in-memory cache of the same photos: is the GPU starved?
#   4. cifar: CIFAR-10's 60,000 JPEGs unpacked from the cifar pack, experiment=cifar10_fast trained in full (10
#      epochs) on them with LitData and pillow-heif unimportable (the cifar pack carries neither): test accuracy and
#      training seconds. A dry run packs a tiny synthetic CIFAR-10 (10 + 5 JPEGs a class) the same way instead.
# Writes OUT_DIR (default outputs/gpu_check): gpu_check.log (everything), summary.md (the tables for docs/gpu.md),
# throughput*.json, step_overhead.json, fashion_best_metrics.json, loader_photos.json, photo_runs.json,
# cifar10_fast_metrics.json.
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
if [ "${1:-}" = "--dry-run" ]; then DRY=1; shift; fi
OUT=${1:-outputs/gpu_check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG="$OUT/gpu_check.log"
SUMMARY="$OUT/summary.md"
WORK=$(mktemp -d)
: > "$LOG"

step() {  # step <name> <seconds> <command...>: run under a time limit, report ok/FAILED, go on either way
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name" >> "$LOG"
  if timeout "$((limit * ${LIMIT_SCALE:-1}))" "$@" >> "$LOG" 2>&1; then
    echo "ok      $name ($((SECONDS - start)) s)" | tee -a "$SUMMARY.steps"
  else
    echo "FAILED  $name ($((SECONDS - start)) s, exit $?; see gpu_check.log)" | tee -a "$SUMMARY.steps"
  fi
}

# --- the environment: carried wheels, lit_vision from src/ ------------------------------------------------------
# the packed wheels win over whatever the interpreter has, so the dry run here imports what the GPU machine will
[ -d .whl ] || { echo "no .whl/: run benchmarks/gpu_pack.sh, and carry .whl and .gpu_data" >&2; exit 2; }
for name in $(ls .whl | sed 's/-[0-9].*//' | sort -u); do  # one by one: a binary wheel for another Python is skipped
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --find-links .whl --target "$WORK/site" \
    "$name" >> "$LOG" 2>&1 || echo "(no wheel of $name for this Python: the interpreter's own is used)" >> "$LOG"
done
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 LIT_VISION_ROOT="$WORK"
if [ $DRY = 1 ]; then STEPS=" ${STEPS:-fashion throughput photos cifar} "
else STEPS=" ${STEPS:-fashion throughput photos} "; fi
want() { [[ "$STEPS" == *" $1 "* ]]; }
if want fashion; then
  [ -d .gpu_data/FashionMNIST ] || { echo "no .gpu_data/FashionMNIST: run benchmarks/gpu_pack.sh, carry .gpu_data" >&2
                                     exit 2; }
  mkdir -p "$WORK/data/FashionMNIST/raw"
  for f in .gpu_data/FashionMNIST/raw/*.gz; do gunzip -c "$f" > "$WORK/data/FashionMNIST/raw/$(basename "$f" .gz)"; done
fi
CIFAR_TAR=.gpu_data/cifar10-jpeg.tar.gz
if want cifar && [ $DRY = 1 ]; then
  # a tiny CIFAR-10 of synthetic JPEGs (train/<class>/, test/<class>/), packed as `gpu_pack.sh --cifar` packs the real
  CIFAR_TAR=$WORK/cifar10-jpeg.tar.gz
  "$PY" - "$WORK/cifar_tiny" >> "$LOG" 2>&1 <<'PYEOF' &&
import sys
from pathlib import Path
from lit_vision.data.synthetic import CIFAR_CLASSES, write_image_folder
root = Path(sys.argv[1])
write_image_folder(root / "train", CIFAR_CLASSES, 10, ext="jpg")
write_image_folder(root / "test", CIFAR_CLASSES, 5, seed=1, ext="jpg")
PYEOF
    tar -czf "$CIFAR_TAR" --sort=name -C "$WORK/cifar_tiny" train test && rm -rf "$WORK/cifar_tiny"
elif want cifar; then
  [ -f "$CIFAR_TAR" ] || { echo "no $CIFAR_TAR: run benchmarks/gpu_pack.sh --cifar and carry .whl and .gpu_data" >&2
                           exit 2; }
fi

CORES=$(nproc)
if [ $DRY = 1 ]; then
  ACCEL=cpu; DEVICE=cpu
  TRAIN_SIZE=(trainer.max_epochs=1 trainer.limit_train_batches=3 trainer.limit_val_batches=2 trainer.limit_test_batches=2)
  BENCH_SIZE=(--synthetic 10000 --steps 2 --warmup 1 --repeats 1)
  FP32_SIZE=(--presets mnist_cnn)
  COMPILE_SIZE=(--presets mnist_cnn)
  PHOTOS=100
  LOADER_SIZE=(--workers 1 --images 16 --batch-size 4 --image-size 32 --prepare-images 20)
  PHOTO_SIZE=(model.net.backbone=resnet10t data.image_size=[64,64] data.batch_size=4 data.eval_batch_size=8
              data.num_workers=1 trainer.max_epochs=2)
  # both presets group 32 optimizer steps (steps_per_execution): a warm-up and a timed group at batch 8 take 512
  # training images (their batch-32/128 cells are skipped, with the reason)
  OVERHEAD_SIZE=(--synthetic 700 --steps 4 --warmup 2 --rounds 1)
  OVERHEAD_PRESETS=(fashion_dense mnist_cnn)
  CIFAR_SIZE=("${TRAIN_SIZE[@]}" data.batch_size=16 data.eval_batch_size=16)
else
  ACCEL=cuda; DEVICE=cuda
  TRAIN_SIZE=()
  BENCH_SIZE=(--synthetic 25000 --steps 30 --warmup 5 --repeats 1)
  FP32_SIZE=(--presets cifar10_model_s fashion_cnn_final)
  COMPILE_SIZE=(--presets cifar10_model_s)
  PHOTOS=4000
  LOADER_SIZE=(--workers $((CORES > 1 ? CORES - 1 : 1)) --images 3000 --prepare-images 1000)
  PHOTO_SIZE=(trainer.max_epochs=4)
  OVERHEAD_SIZE=(--synthetic 3000 --rounds 3)
  OVERHEAD_PRESETS=(${PRESETS:-})
  CIFAR_SIZE=()
fi

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%MZ)$([ $DRY = 1 ] && echo ' (dry run on the CPU)')"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -3
  "$PY" -c "import torch, lightning, timm, torchmetrics, torchvision, hydra; print('torch', torch.__version__, \
'cuda', torch.version.cuda, 'bf16', torch.cuda.is_available() and torch.cuda.is_bf16_supported(), \
'| lightning', lightning.__version__, 'timm', timm.__version__, 'torchmetrics', torchmetrics.__version__, \
'torchvision', torchvision.__version__, 'hydra', hydra.__version__)" 2>&1
  echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
  echo '```'
} > "$SUMMARY"
cat "$SUMMARY" | tee -a "$LOG"
: > "$SUMMARY.steps"

# --- 1. accuracy: fashion_best in full ----------------------------------------------------------------------------
if want fashion; then
step "train fashion_best ($ACCEL)" 240 \
  "$PY" -m lit_vision.train experiment=fashion_best data.root="$WORK/data" accelerator=$ACCEL "${TRAIN_SIZE[@]}" \
    hydra.run.dir="$WORK/runs/fashion_best" paths.cache_dir="$WORK/cache"
cp "$WORK/runs/fashion_best/metrics.json" "$OUT/fashion_best_metrics.json" 2>/dev/null
fi

# --- 2. throughput: every notebook preset, lit_vision vs the hand-written loop ------------------------------------
if want throughput; then
BENCH_PRESETS=(${PRESETS:-})
step "throughput, ${PRESETS:-7 notebook presets}, precision=auto" 150 \
  "$PY" benchmarks/throughput.py --device $DEVICE "${BENCH_SIZE[@]}" ${PRESETS:+--presets "${BENCH_PRESETS[@]}"} \
    --variants nchw channels_last \
    --json "$OUT/throughput.json" --markdown "$WORK/throughput.md"
# --- 3. fp32 and lit_vision compiled, on convolutional presets ---------------------------------------------------
step "throughput, fp32" 60 \
  "$PY" benchmarks/throughput.py --device $DEVICE "${BENCH_SIZE[@]}" "${FP32_SIZE[@]}" \
    --variants nchw channels_last --overrides trainer.precision=32-true \
    --json "$OUT/throughput_fp32.json" --markdown "$WORK/throughput_fp32.md"
step "throughput, model.compile=true" 240 \
  "$PY" benchmarks/throughput.py --device $DEVICE "${BENCH_SIZE[@]}" "${COMPILE_SIZE[@]}" \
    --variants compiled --overrides model.compile=true \
    --json "$OUT/throughput_compiled.json" --markdown "$WORK/throughput_compiled.md"
# --- Lightning's cost per optimizer step, against the hand-written loop -----------------------------------------
OVERHEAD_NAMES="${OVERHEAD_PRESETS[*]}"
rm -f "$OUT/step_overhead.json" "$OUT/step_overhead.md"  # the summary takes its table from OUT: none from before
step "step overhead, ${OVERHEAD_NAMES:-7 notebook presets}" 240 \
  "$PY" benchmarks/step_overhead.py --device $DEVICE "${OVERHEAD_SIZE[@]}" \
    ${OVERHEAD_PRESETS[@]:+--presets "${OVERHEAD_PRESETS[@]}"} \
    --json "$OUT/step_overhead.json" --markdown "$OUT/step_overhead.md"
fi

# --- 3. photos at 224 px: the shards loader alone, and feeding photo_finetune on the GPU ---------------------------
if want photos; then
step "photos: make $PHOTOS and prepare shards" 240 bash -c "\"\$0\" benchmarks/make_photos.py \"$WORK/photos\" \
  --count $PHOTOS --source .gpu_data/photo_source --workers $CORES && \"\$0\" -m lit_vision.prepare data=image_folder \
  data.root=\"$WORK/photos\" out=\"$WORK/shards\"" "$PY"
step "photos: benchmarks/loader.py" 240 \
  "$PY" benchmarks/loader.py --folder "$WORK/photos" --shards "$WORK/shards" "${LOADER_SIZE[@]}" \
    --work "$WORK" --json "$OUT/loader_photos.json"
for source in shards memory; do
  if [ $source = shards ]; then DATA_ARGS=(data.root="$WORK/shards")
  else DATA_ARGS=(data=image_folder data.root="$WORK/photos" paths.cache_dir="$WORK/cache"); fi
  step "photos: photo_finetune from $source ($ACCEL)" 240 \
    "$PY" -m lit_vision.train experiment=photo_finetune "${DATA_ARGS[@]}" accelerator=$ACCEL \
      model.net.freeze_epochs=0 "${PHOTO_SIZE[@]}" hydra.run.dir="$WORK/runs/photo_$source"
done
fi

# --- 4. CIFAR-10 from its JPEGs: cifar10_fast in full, without LitData and pillow-heif ---------------------------
if want cifar; then
step "cifar: unpack $(basename "$CIFAR_TAR")" 120 bash -c "mkdir -p \"\$1\" && tar -xzf \"\$0\" -C \"\$1\" &&
  echo \"\$(find \"\$1/train\" -type f | wc -l) train and \$(find \"\$1/test\" -type f | wc -l) test images\"" \
  "$CIFAR_TAR" "$WORK/cifar10-jpeg"
# the cifar pack carries neither LitData nor pillow-heif: they are made unimportable here too (shadowed by modules
# that raise ModuleNotFoundError), so the dry run, whose interpreter has both, fails where the GPU machine would
mkdir -p "$WORK/without"
for module in litdata pillow_heif; do
  echo "raise ModuleNotFoundError('$module: not in the cifar pack (gpu_check.sh keeps it out of the cifar step)', \
name='$module')" > "$WORK/without/$module.py"
done
rm -f "$OUT/cifar10_fast_metrics.json"
step "train cifar10_fast ($ACCEL)" 420 \
  env PYTHONPATH="$WORK/without:$PYTHONPATH" \
  "$PY" -m lit_vision.train experiment=cifar10_fast data.root="$WORK/cifar10-jpeg" accelerator=$ACCEL \
    "${CIFAR_SIZE[@]}" hydra.run.dir="$WORK/runs/cifar10_fast" paths.cache_dir="$WORK/cache"
cp "$WORK/runs/cifar10_fast/metrics.json" "$OUT/cifar10_fast_metrics.json" 2>/dev/null
fi

# --- the summary ------------------------------------------------------------------------------------------------
metrics_line() {  # metrics_line <metrics.json> <min|s>: test accuracy, epochs, images and training time of one run
  "$PY" - "$1" "$2" <<'PYEOF'
import json, sys
try:
    m = json.load(open(sys.argv[1]))
except OSError:
    print("no metrics.json (the run failed; see gpu_check.log)")
    raise SystemExit
test = m.get("test", m)
keys = [k for k in ("test/acc", "acc") if k in test] or [k for k in test if k.endswith("acc")]
acc = test[keys[0]] if keys else None
seconds = m.get("train_seconds", 0)
counts = m.get("data", {}).get("counts", {})
images = "/".join(f"{sum(counts[s].values()):,}" for s in ("train", "val", "test") if s in counts)
print(f"test accuracy {acc:.4f}" if isinstance(acc, float) else f"test: {test}",
      f"| epochs {m.get('epochs_trained')}" + (f" | train/val/test images {images}" if images else ""),
      f"| training {seconds / 60:.2f} min" if sys.argv[2] == "min" else f"| training {seconds:.1f} s")
PYEOF
}
{
  echo
  echo '## Steps'
  echo
  sed 's/^/    /' "$SUMMARY.steps"
  echo
  if want fashion; then
  echo '## fashion_best'
  echo
  metrics_line "$OUT/fashion_best_metrics.json" min
  fi
  for md in "$WORK/throughput.md" "$WORK/throughput_fp32.md" "$WORK/throughput_compiled.md" "$OUT/step_overhead.md"; do
    [ -f "$md" ] && { echo; echo "## $(basename "$md" .md)"; echo; cat "$md"; }
  done
  if want photos; then
    echo
    echo '## photos'
    echo
    "$PY" - "$OUT" "$WORK/runs" <<'PYEOF'
import csv, json, statistics, sys
from pathlib import Path
out, runs = Path(sys.argv[1]), Path(sys.argv[2])
try:
    loader = json.loads((out / "loader_photos.json").read_text())
except OSError:
    loader = None
    print("no loader_photos.json (the loader step failed; see gpu_check.log)")
if loader:
    s = loader["settings"]
    print(f"loader: {s['image_size']} px crops, batch {s['batch_size']}, {s['workers']} workers; CPU "
          f"{loader['machine']['cpu']} ({loader['machine']['cores']} cores)\n")
    print("| measurement | workers | images/s |\n|---|---:|---:|")
    for r in loader["rows"]:
        print(f"| {r['name']} | {r['workers']} | {r['images_per_s']:,.0f} |")
    for t in loader["targets"]:
        print(f"\ntarget: {t['target']}: {t['value']:,.0f} vs {t['threshold']:,.0f} — {'met' if t['met'] else 'NOT met'}")
rows = {}
for source in ("shards", "memory"):
    run = runs / f"photo_{source}"
    try:
        metrics = json.loads((run / "metrics.json").read_text())
        with open(run / "history.csv") as f:
            seconds = [float(r["time/epoch_seconds"]) for r in csv.DictReader(f) if r.get("time/epoch_seconds")]
    except (OSError, KeyError, ValueError) as exc:
        print(f"\nphoto_finetune from {source}: no record ({exc}; see gpu_check.log)")
        continue
    train = sum(metrics["data"]["counts"]["train"].values())
    steady = statistics.median(seconds[1:] or seconds)  # the first epoch also pays start-up and autotuning
    rows[source] = {"train_images": train, "epoch_seconds": seconds, "images_per_s": train / steady,
                    "test": {k: v for k, v in metrics.items() if k.startswith("test/")}}
if rows:
    print("\n| experiment=photo_finetune, training | images/s | epoch seconds |")
    print("|---|---:|---|")
    for source, r in rows.items():
        label = "from shards (LitData workers)" if source == "shards" else "from the in-memory cache (no loader)"
        print(f"| {label} | {r['images_per_s']:,.0f} | {', '.join(f'{x:.1f}' for x in r['epoch_seconds'])} |")
    if loader and "shards" in rows:
        alone = next(r["images_per_s"] for r in loader["rows"] if r["key"] == "shards_loader")
        print(f"\nshards training / loader alone: {rows['shards']['images_per_s'] / alone:.2f}", end="")
        if "memory" in rows:
            print(f"; shards training / in-memory training: "
                  f"{rows['shards']['images_per_s'] / rows['memory']['images_per_s']:.2f}", end="")
        print()
(out / "photo_runs.json").write_text(json.dumps(rows, indent=2))
PYEOF
  fi
  if want cifar; then
    echo
    echo '## cifar10_fast'
    echo
    metrics_line "$OUT/cifar10_fast_metrics.json" s
  fi
} >> "$SUMMARY"
rm -f "$SUMMARY.steps"
echo "summary: $SUMMARY  log: $LOG"
rm -rf "$WORK"
