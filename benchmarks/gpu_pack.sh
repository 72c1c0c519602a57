#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.sh needs on a GPU machine that reaches no package registry and gets only the
# checkout plus up to 64 MiB of carried files (not ../shared). Two packs, each replacing the other (together they
# exceed the carry limit):
#
# the default pack, for gpu_check.sh's fashion, throughput and photos steps:
#   .whl/           wheels of what the machine's image lacks (Hydra, OmegaConf, ANTLR's runtime, LitData and the
#                   boto3/requests stack it imports, pillow-heif), for Python 3.12, at the versions this checkout's
#                   environment runs (~24 MB; the CPU dry run takes its interpreter's own binary ones instead)
#   .gpu_data/      Fashion-MNIST's four IDX files, gzipped (~30 MB), for gpu_check.sh's accuracy run, and 100
#                   CIFAR-10 JPEGs per class (photo_source/, ~1.5 MB) that its photo step makes photos from
#                   (~55 MB together)
# the cifar pack (--cifar), for its cifar step alone (STEPS=cifar), which needs neither LitData nor pillow-heif:
#   .whl/           Hydra, OmegaConf and ANTLR's runtime (~0.4 MB)
#   .gpu_data/      cifar10-jpeg.tar.gz: DATA_ROOT/cifar10-jpeg's train/ and test/ (60,000 JPEGs, 55 MB of files)
#                   as one gzipped tar (~20 MB: uncompressed, tar's 512-byte headers and padding would make it
#                   ~88 MiB, and gzip shares the small JPEGs' identical tables)
# Both are git-ignored; the total is printed, and the pack fails if it exceeds 64 MiB. Carry them: device run with
# carry [".whl", ".gpu_data"].
#
#   bash benchmarks/gpu_pack.sh [DATA_ROOT]          # the default pack; DATA_ROOT: ../shared/datasets unless given
#   bash benchmarks/gpu_pack.sh --cifar [DATA_ROOT]  # the cifar pack      (PYTHON: .venv/bin/python unless set)
set -euo pipefail
cd "$(dirname "$0")/.."
CIFAR_ONLY=0
if [ "${1:-}" = "--cifar" ]; then CIFAR_ONLY=1; shift; fi
DATA=${1:-../shared/datasets}
PY=${PYTHON:-.venv/bin/python}
LIMIT=$((64 * 1024 * 1024))  # the carry limit, bytes

if [ $CIFAR_ONLY = 1 ]; then
  [ -d "$DATA/cifar10-jpeg/train" ] && [ -d "$DATA/cifar10-jpeg/test" ] || {
    echo "no $DATA/cifar10-jpeg/{train,test}: give the folder holding cifar10-jpeg as DATA_ROOT" >&2; exit 2; }
fi

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
if [ $CIFAR_ONLY = 1 ]; then
  PACKAGES=(hydra-core omegaconf)
else
  PACKAGES=(hydra-core omegaconf litdata boto3 botocore s3transfer jmespath python-dateutil six urllib3
            requests idna certifi charset-normalizer pillow-heif)
fi
PINNED=()
for p in "${PACKAGES[@]}"; do PINNED+=("$p==$(version "$p")"); done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${PINNED[@]}"
# ANTLR's 4.9.3 runtime (what OmegaConf 2.3 needs) is published as an sdist only: build its pure-Python wheel here
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

rm -rf .gpu_data && mkdir -p .gpu_data
if [ $CIFAR_ONLY = 1 ]; then
  # read-only from DATA_ROOT: tar reads the JPEGs, member names train/<class>/<file> and test/<class>/<file>
  tar -czf .gpu_data/cifar10-jpeg.tar.gz --sort=name -C "$DATA/cifar10-jpeg" train test
else
  mkdir -p .gpu_data/FashionMNIST/raw
  for f in "$DATA"/FashionMNIST/raw/*-ubyte; do
    gzip -c "$f" > ".gpu_data/FashionMNIST/raw/$(basename "$f").gz"
  done
  CIFAR=$DATA/cifar10-jpeg/train
  for class_dir in "$CIFAR"/*/; do
    class=$(basename "$class_dir")
    mkdir -p ".gpu_data/photo_source/train/$class"
    find "$class_dir" -maxdepth 1 -type f -name '*.jp*g' | sort | sed -n 1,100p |
      xargs -I{} cp {} ".gpu_data/photo_source/train/$class/"
  done
fi
du -sh --apparent-size .whl .gpu_data
TOTAL=$(du -scb .whl .gpu_data | tail -1 | cut -f1)  # bytes of the files (-b: apparent size), as carried
echo "carried: $((TOTAL / 1024)) KiB of the $((LIMIT / 1024)) KiB limit"
if [ "$TOTAL" -gt "$LIMIT" ]; then
  echo "ERROR: .whl and .gpu_data hold $TOTAL bytes, over the 64 MiB ($LIMIT bytes) a device run carries" >&2
  exit 1
fi
