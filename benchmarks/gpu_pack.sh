#!/usr/bin/env bash
# Packs what benchmarks/gpu_check.sh needs on a GPU machine that reaches no package registry and gets only the
# checkout plus up to 64 MiB of carried files (not ../shared):
#   .whl/           wheels of what the machine's image lacks (Hydra, OmegaConf, ANTLR's runtime, LitData and the
#                   boto3/requests stack it imports, pillow-heif), for Python 3.12, at the versions this checkout's
#                   environment runs (~24 MB; the CPU dry run takes its interpreter's own binary ones instead)
#   .gpu_data/      Fashion-MNIST's four IDX files, gzipped (~30 MB), for gpu_check.sh's accuracy run, and 100
#                   CIFAR-10 JPEGs per class (photo_source/, ~1.5 MB) that its photo step makes photos from
# Both are git-ignored, ~55 MB together (the carry limit is 64 MiB); carry them: device run with
# carry [".whl", ".gpu_data"].
#
#   bash benchmarks/gpu_pack.sh [DATA_ROOT]      # DATA_ROOT defaults to ../shared/datasets; PYTHON to .venv/bin/python
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets}
PY=${PYTHON:-.venv/bin/python}

version() { "$PY" -c "import importlib.metadata as m; print(m.version('$1'))"; }
PACKAGES=(hydra-core omegaconf litdata boto3 botocore s3transfer jmespath python-dateutil six urllib3
          requests idna certifi charset-normalizer pillow-heif)
PINNED=()
for p in "${PACKAGES[@]}"; do PINNED+=("$p==$(version "$p")"); done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl "${PINNED[@]}"
# ANTLR's 4.9.3 runtime (what OmegaConf 2.3 needs) is published as an sdist only: build its pure-Python wheel here
"$PY" -m pip wheel -q --no-deps -w .whl "antlr4-python3-runtime==$(version antlr4-python3-runtime)"

rm -rf .gpu_data && mkdir -p .gpu_data/FashionMNIST/raw
for f in "$DATA"/FashionMNIST/raw/*-ubyte; do
  gzip -c "$f" > ".gpu_data/FashionMNIST/raw/$(basename "$f").gz"
done
CIFAR=$DATA/cifar10-jpeg/train
for class_dir in "$CIFAR"/*/; do
  class=$(basename "$class_dir")
  mkdir -p ".gpu_data/photo_source/train/$class"
  find "$class_dir" -maxdepth 1 -type f -name '*.jp*g' | sort | sed -n 1,100p | xargs -I{} cp {} ".gpu_data/photo_source/train/$class/"
done
du -sh .whl .gpu_data
