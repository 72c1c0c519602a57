"""Which CPU numerics train the notebook nets fastest on this machine: exact fp32, fp32 with TF32-style matmuls
(``torch.set_float32_matmul_precision("high")``) and bf16 autocast — the evidence behind ``trainer.precision=auto``
and lit_vision keeping exact fp32 matmuls on CPUs.

    python benchmarks/cpu_precision.py --presets fashion_cnn_final mnist_cnn cifar10_model_s --steps 20 --repeats 3

The hand-written loop of ``benchmarks/throughput.py`` (NCHW and channels_last), training images/s, medians of
interleaved repeats.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import throughput
import torch
from rich.console import Console
from rich.table import Table
from throughput import PRESETS, PlainLoop, cpu_model

MODES = ("fp32 exact", "fp32 high", "bf16 autocast")


def rate(loop: PlainLoop, variant: str, mode: str, steps: int) -> float:
    """Images/s of ``steps`` training steps of ``loop`` in ``variant`` layout under ``mode`` numerics."""
    loop.precision = "bf16-mixed" if mode == "bf16 autocast" else "32-true"
    loop._steps.pop(variant, None)
    loop.rate(variant, 3, 2)  # builds and warms the step (and sets exact fp32 matmuls)
    torch.set_float32_matmul_precision("high" if mode == "fp32 high" else "highest")
    step = loop._steps[variant]
    order = torch.randperm(len(loop.labels))
    start = time.perf_counter()
    images = sum(step(order[i * loop.batch:(i + 1) * loop.batch]) for i in range(steps))
    elapsed = time.perf_counter() - start
    torch.set_float32_matmul_precision("highest")
    return images / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["fashion_cnn_final", "mnist_cnn", "cifar10_model_s"],
                    choices=PRESETS)
    ap.add_argument("--data-root", type=Path, default=throughput.REPO.parent / "shared" / "datasets")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    bench_args = throughput.parse_args(["--data-root", str(args.data_root), "--device", "cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        loops = {p: PlainLoop(p, bench_args, Path(tmp)) for p in args.presets}
        results: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(args.repeats):
            for preset, loop in loops.items():
                for variant in ("nchw", "channels_last"):
                    for mode in MODES:
                        results.setdefault((preset, variant, mode), []).append(rate(loop, variant, mode, args.steps))
    table = Table(title=f"training images/s, hand-written loop, median of {args.repeats} — {cpu_model()} "
                        f"({torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads")
    for col in ("preset", "layout", *MODES):
        table.add_column(col, justify="left" if col in ("preset", "layout") else "right")
    for (preset, variant, _mode), _ in list(results.items())[::len(MODES)]:
        table.add_row(preset, variant, *(f"{statistics.median(results[(preset, variant, m)]):,.0f}" for m in MODES))
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
