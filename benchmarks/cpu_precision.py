"""Which CPU numerics train the notebook nets fastest on this machine: exact fp32, fp32 with TF32-style matmuls
(``torch.set_float32_matmul_precision("high")``) and bf16 autocast — the evidence behind ``trainer.precision=auto``
and lit_vision keeping exact fp32 matmuls on CPUs.

    python benchmarks/cpu_precision.py --presets fashion_cnn_final mnist_cnn cifar10_model_s --steps 20 --repeats 3

The hand-written loop of ``benchmarks/throughput.py`` (NCHW and channels_last), training images/s, medians of
interleaved repeats. ``--synthetic N`` trains on N synthetic images per dataset instead of ``--data-root`` (CI's tiny
run: ``--presets mnist_cnn --synthetic 2000 --steps 2 --repeats 1 --json out.json``); ``--json`` writes one row per
preset, layout and mode: ``{"preset", "layout", "mode", "images_per_s", "repeats"}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import throughput
import torch
from rich.console import Console
from rich.table import Table
from throughput import PRESETS, PlainLoop, cpu_model

from lit_vision.data.synthetic import write_notebook_datasets

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


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["fashion_cnn_final", "mnist_cnn", "cifar10_model_s"],
                    choices=PRESETS)
    ap.add_argument("--data-root", type=Path, default=throughput.REPO.parent / "shared" / "datasets")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="train on N synthetic images per dataset (written to a temp dir) instead of --data-root")
    ap.add_argument("--json", type=Path, default=None, help="write one row per preset, layout and mode here")
    args = ap.parse_args(argv)
    bench_args = throughput.parse_args(["--data-root", str(args.data_root), "--device", "cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        if args.synthetic:
            bench_args.data_root = write_notebook_datasets(Path(tmp) / "data", n_train=args.synthetic)
            bench_args.cache_dir = Path(tmp) / "cache"
            # synthetic classes are smaller than the real ones that data.mapping.per_class undersamples to
            bench_args.overrides = ["data.mapping.per_class=null"]
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
    rows = [{"preset": preset, "layout": variant, "mode": mode, "images_per_s": statistics.median(values),
             "repeats": values} for (preset, variant, mode), values in results.items()]
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
