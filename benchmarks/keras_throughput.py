"""Training images/s of the notebooks' own Keras models: the "Keras" column of the throughput benchmark.

Runs in the separate TensorFlow environment (bash benchmarks/setup_keras_venv.sh makes .venv-keras) and imports
only TensorFlow / Keras / NumPy and benchmarks/keras_models.py:

    .venv-keras/bin/python benchmarks/keras_throughput.py --check
    .venv-keras/bin/python benchmarks/keras_throughput.py --presets horse_cnn cifar10_model_s \\
        --steps 30 --warmup 5 --repeats 3 --threads 2 --json benchmarks/results/keras.json

Each preset trains its notebook model with ``model.fit`` (the notebooks' own loop: Keras' compiled train step,
its metrics, callbacks) on a tf.data pipeline of exactly ``warmup + steps`` batches, one epoch per repeat. A
callback starts the clock when batch ``warmup`` begins and stops it when the last batch ends, so tracing and
warm-up never count. Data: random uint8-range pixels of the real shape, as float32 scaled to [0, 1] (raw
0..255 for Model S, whose first layer is Rescaling(1/255)), and random labels in the format the loss takes;
a pool of up to 8 distinct batches is cycled (speed only, not accuracy). Repeats are interleaved across
presets (round r of every preset, then round r + 1) so background load hits them alike; the median is
reported.

JSON (--json): {"tensorflow": "2.21.0", "keras": ..., "threads": T, "inter_op_threads": T, "steps": N,
"warmup": W, "metrics": true, "jit_compile": "auto", "rows": [{"preset": ..., "images_per_s": median,
"repeats": [images/s per repeat], "batch": B, "params": trainable, "ms_per_step": median}]}.
Exit status: 0 ok, 1 --check found a parameter count that differs from the notebook's, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# Before TensorFlow is imported: no INFO/WARNING chatter from the C++ runtime.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_CPP_MAX_VLOG_LEVEL", "0")

HERE = Path(__file__).resolve().parent
ALL_PRESETS = (
    "horse_cnn",
    "cifar10_model_s",
    "fashion_dense",
    "fashion_cnn_final",
    "mnist_dense_mse",
    "mnist_cnn",
    "fer_custom_cnn",
)
POOL_BATCHES = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--presets",
        nargs="+",
        default=list(ALL_PRESETS),
        choices=ALL_PRESETS,
        metavar="PRESET",
        help=f"presets to run (default: all): {' '.join(ALL_PRESETS)}",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=30,
        help="timed training steps per repeat (default 30)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed steps before them, every repeat (default 5)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds per preset; the median is reported",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="TensorFlow intra-op threads (default: os.cpu_count())",
    )
    p.add_argument(
        "--inter-op-threads",
        type=int,
        default=None,
        help="inter-op threads (default: --threads)",
    )
    p.add_argument(
        "--json", type=Path, default=None, help="write the results here as JSON"
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="build every selected model, print and assert its parameter counts; no training",
    )
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="compile without the notebooks' fit metrics (accuracy; F1 and AUC in notebook 002)",
    )
    p.add_argument(
        "--jit-compile",
        action="store_true",
        help="compile with jit_compile=True (XLA); default 'auto' = no XLA on CPU, as the notebooks ran",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--verbose",
        action="store_true",
        help="let TensorFlow's import-time messages through",
    )
    args = p.parse_args(argv)
    for name in ("steps", "repeats", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.inter_op_threads is None:
        args.inter_op_threads = args.threads
    return args


def import_tensorflow(verbose: bool):
    """Import TensorFlow with file descriptor 2 muted: TF 2.21 prints its oneDNN notice through absl before any
    log level applies (TF_CPP_MIN_LOG_LEVEL does not stop it). Errors still surface as Python exceptions."""
    if verbose:
        import tensorflow as tf

        return tf
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return tf


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tf = import_tensorflow(args.verbose)
    # must happen before the TF runtime starts (before the first op)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    tf.get_logger().setLevel("ERROR")

    import keras
    import numpy as np

    sys.path.insert(0, str(HERE))
    import keras_models as km

    jit = True if args.jit_compile else "auto"

    def build(preset: str):
        keras.utils.set_random_seed(args.seed)
        return km.PRESETS[preset](metrics=not args.no_metrics, jit_compile=jit)

    versions = f"tensorflow {tf.__version__}, keras {keras.__version__}, numpy {np.__version__}"
    print(
        f"{versions}; threads intra {args.threads} / inter {args.inter_op_threads} "
        f"(cpu_count {os.cpu_count()})",
        flush=True,
    )

    if args.check:
        return check(args.presets, build, km)

    # ---- build every model and its data once; then interleave the timed rounds --------------------------
    rng = np.random.default_rng(args.seed)
    total_steps = args.warmup + args.steps
    runs = {}
    for preset in args.presets:
        model, batch, shape, n_out = build(preset)
        k = min(POOL_BATCHES, total_steps)
        x = rng.integers(0, 256, size=(k, batch, *shape), dtype=np.uint8).astype(
            np.float32
        )
        if preset not in km.RAW_PIXELS:
            x /= 255.0
        ids = rng.integers(0, max(n_out, 2), size=(k, batch))
        kind = km.LABELS[preset]
        if kind == "sparse":
            y = ids.astype(np.int32)
        elif kind == "onehot":
            y = np.eye(n_out, dtype=np.float32)[ids]
        else:  # binary, one sigmoid output
            y = ids.astype(np.float32)[..., None]
        # pre-batched elements, cycled: exactly warmup + steps batches per fit() call
        ds = (
            tf.data.Dataset.from_tensor_slices((x, y))
            .repeat()
            .take(total_steps)
            .prefetch(tf.data.AUTOTUNE)
        )
        runs[preset] = {
            "model": model,
            "batch": batch,
            "ds": ds,
            "ips": [],
            "ms": [],
            "params": km.param_counts(model)[0],
        }

    class StepTimer(keras.callbacks.Callback):
        def __init__(self, warmup: int) -> None:
            super().__init__()
            self.warmup, self.t0, self.t1, self.timed = warmup, None, None, 0

        def on_train_batch_begin(self, batch, logs=None):
            if batch == self.warmup:
                self.t0 = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.t1 = time.perf_counter()
            self.timed += batch >= self.warmup

    for r in range(args.repeats):
        for preset, run in runs.items():
            timer = StepTimer(args.warmup)
            run["model"].fit(
                run["ds"], epochs=1, verbose=0, shuffle=False, callbacks=[timer]
            )
            if timer.timed != args.steps:
                raise RuntimeError(
                    f"{preset}: timed {timer.timed} batches, expected {args.steps}"
                )
            seconds = timer.t1 - timer.t0
            ips = args.steps * run["batch"] / seconds
            run["ips"].append(ips)
            run["ms"].append(1000 * seconds / args.steps)
            print(
                f"  round {r + 1}/{args.repeats}  {preset:<18} {ips:10.1f} images/s",
                flush=True,
            )

    rows = []
    for preset, run in runs.items():
        rows.append(
            {
                "preset": preset,
                "images_per_s": round(statistics.median(run["ips"]), 1),
                "repeats": [round(v, 1) for v in run["ips"]],
                "batch": run["batch"],
                "params": run["params"],
                "ms_per_step": round(statistics.median(run["ms"]), 2),
            }
        )

    print(
        f"\nKeras training throughput ({args.steps} steps after {args.warmup} warm-up, median of "
        f"{args.repeats}, model.fit, fp32 CPU, {args.threads} threads"
        f"{', no metrics' if args.no_metrics else ''}{', XLA' if args.jit_compile else ''})"
    )
    print(
        f"{'preset':<18} {'batch':>5} {'params':>10} {'images/s':>10} {'ms/step':>9}  repeats"
    )
    for row in rows:
        reps = " ".join(f"{v:.0f}" for v in row["repeats"])
        print(
            f"{row['preset']:<18} {row['batch']:>5} {row['params']:>10,} {row['images_per_s']:>10.1f} "
            f"{row['ms_per_step']:>9.2f}  {reps}"
        )

    if args.json is not None:
        result = {
            "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "inter_op_threads": args.inter_op_threads,
            "steps": args.steps,
            "warmup": args.warmup,
            "metrics": not args.no_metrics,
            "jit_compile": jit,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def check(presets: list[str], build, km) -> int:
    """Build each model (no training) and compare its parameter counts with the notebooks'."""
    import numpy as np

    print(
        f"{'preset':<18} {'input':<12} {'batch':>5} {'out':>3} {'trainable':>10} {'total':>10}  "
        f"{'loss':<32} optimizer"
    )
    bad = []
    for preset in presets:
        model, batch, shape, n_out = build(preset)
        trainable, total = km.param_counts(model)
        want = km.EXPECTED_PARAMS[preset]
        ok = (trainable, total) == want
        if not ok:
            bad.append(
                f"{preset}: trainable/total {trainable:,}/{total:,}, expected {want[0]:,}/{want[1]:,}"
            )
        loss = model.loss if isinstance(model.loss, str) else type(model.loss).__name__
        opt = model.optimizer
        lr = float(np.asarray(opt.learning_rate))
        print(
            f"{preset:<18} {'x'.join(map(str, shape)):<12} {batch:>5} {n_out:>3} {trainable:>10,} {total:>10,}  "
            f"{loss:<32} {type(opt).__name__}(lr={lr:g})  {'ok' if ok else 'MISMATCH'}"
        )
        assert model.output_shape[-1] == n_out, (preset, model.output_shape)
        assert tuple(model.input_shape[1:]) == tuple(shape), (preset, model.input_shape)
        del model
    if bad:
        print("parameter counts differ from the notebooks':\n  " + "\n  ".join(bad))
        return 1
    print(f"all {len(presets)} parameter counts match the notebooks'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
