#!/usr/bin/env bash
# Creates <repo>/.venv-keras: a separate virtual environment with TensorFlow (CPU) for
# benchmarks/keras_throughput.py, the "Keras" column of the throughput benchmark. Kept apart from
# the project's own environment so that TensorFlow's pins never touch torch / lightning.
#
#   bash benchmarks/setup_keras_venv.sh           # create it (skipped if it already imports TF)
#   bash benchmarks/setup_keras_venv.sh --force   # delete and recreate it
#   TF_VERSION=2.20.0 bash benchmarks/setup_keras_venv.sh --force
#
# Downloads a few hundred MB from PyPI. Afterwards:
#   .venv-keras/bin/python benchmarks/keras_throughput.py --check
set -euo pipefail

TF_VERSION="${TF_VERSION:-2.21.0}"   # TensorFlow 2.21 / Keras 3, as in docs keras-reference.md
PYTHON="${PYTHON:-python3}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv-keras"

if [[ "${1:-}" == "--force" ]]; then
    rm -rf "$VENV"
fi
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import tensorflow" 2>/dev/null; then
    echo "$VENV already has TensorFlow (use --force to recreate)"
else
    start=$(date +%s)
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q "tensorflow-cpu==$TF_VERSION" numpy
    echo "created $VENV in $(( $(date +%s) - start )) s"
fi
TF_CPP_MIN_LOG_LEVEL=2 "$VENV/bin/python" -c \
    "import tensorflow as tf, keras, numpy; print('tensorflow', tf.__version__, '| keras', keras.__version__, '| numpy', numpy.__version__)"
