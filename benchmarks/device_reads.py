"""Device reads per training step of each preset family, counted on any machine (a CPU included).

    python benchmarks/device_reads.py [--cases horse_cnn ema ...] [--json out.json] [--markdown out.md]

Each case trains two short epochs (12 batches of 8, a logging step every 5, validation, the default callbacks and
CSV logger, the progress bar as in a log file) on synthetic data in its source's real layout, under
``lit_vision.training.device_reads.DeviceReads``: every ``.item()``/``bool()``/``float()`` of a tensor, ``tolist``,
``numpy``, ``cpu``, data-dependent-shape op and number copied to the device — each a host sync on a GPU. The table
gives reads per non-logging training step, per logging step and per validation step, and the most frequent call
site. ``tests/test_device_reads.py`` asserts the zeros; this script shows the counts (and, run on an older checkout
with this file and ``src/lit_vision/training/device_reads.py`` copied in, what they were).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict
from rich.console import Console
from rich.table import Table

import lit_vision.commands.train as train_command
from lit_vision.data.synthetic import FER_CLASSES, write_cifar_folders, write_fer_folders, write_torchvision_idx
from lit_vision.reproduction.machine import cpu_model
from lit_vision.runs.markdown import markdown_table
from lit_vision.training.device_reads import DeviceReads, StepWindows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import compose_train  # noqa: E402  (the train command's config, as the other benchmarks compose it)

#: case -> overrides: the preset families and the recipe features
CASES: dict[str, list[str]] = {
    "horse_cnn": ["experiment=horse_cnn"],
    "cifar10_model_s": ["experiment=cifar10_model_s"],
    "fashion_dense": ["experiment=fashion_dense"],
    "mnist_dense_mse": ["experiment=mnist_dense_mse"],
    "mnist_cnn": ["experiment=mnist_cnn"],
    "fer_custom_cnn_aug": ["experiment=fer_custom_cnn_aug"],
    "fer_vgg16 (no feature cache, as on a GPU)": ["experiment=fer_vgg16", "model.net.cache_features=false"],
    "cifar10_fast": ["experiment=cifar10_fast"],
    "ema": ["experiment=cifar10_model_s", "model.ema_decay=0.9"],
    "mixup+cutmix": ["experiment=cifar10_model_s", "model.mix.mixup_alpha=0.2", "model.mix.cutmix_alpha=1.0"],
    "class weights": ["experiment=fer_custom_cnn", "data=fer_happy_sad_weighted"],
    "TrivialAugment": ["experiment=horse_cnn", "data.augment.trivial_augment=true"],
    "DataLoader batches": ["experiment=horse_cnn", "data.on_device=false"],
}
SHORT = ["accelerator=cpu", "trainer.max_epochs=2", "trainer.limit_train_batches=12", "trainer.limit_val_batches=3",
         "trainer.log_every_n_steps=5", "data.batch_size=8", "test=false", "validate_best=false",
         "~callbacks.model_summary", "report.plots=false"]


def synthetic_roots(work: Path) -> dict[str, Path]:
    idx = work / "idx"
    idx.mkdir(parents=True)
    write_torchvision_idx(idx, "MNIST")
    write_torchvision_idx(idx, "FashionMNIST")
    cifar = write_cifar_folders(work / "cifar")
    fer = write_fer_folders(work / "fer", train={c: 40 for c in FER_CLASSES}, test={c: 3 for c in FER_CLASSES})
    return {"mnist": idx, "fashion_mnist": idx, "cifar10": cifar, "cifar_horse": cifar, "fer2013": fer,
            "fer_happy_sad": fer, "fer_happy_sad_weighted": fer}


def config(overrides: list[str], run_dir: Path) -> DictConfig:
    cfg = compose_train(overrides, run_dir)
    with open_dict(cfg):
        cfg.paths.log_dir = str(run_dir.parent / "logs")
        cfg.paths.cache_dir = str(run_dir.parent / "cache")
    return cfg


def counted_run(cfg: DictConfig) -> DeviceReads:
    """``lit_vision.train`` on ``cfg`` under a read counter whose step windows open before any other callback's
    hooks (``tests/test_device_reads.py`` runs its cases through this too)."""
    build = train_command.build_trainer

    def build_trainer(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        trainer = build(cfg, *args, **kwargs)
        trainer.callbacks.insert(0, StepWindows())
        return trainer

    train_command.build_trainer = build_trainer
    try:
        with DeviceReads() as reads:
            train_command.run(cfg)
    finally:
        train_command.build_trainer = build
    return reads


def count(case: str, overrides: list[str], roots: dict[str, Path], work: Path) -> dict[str, Any]:
    run_dir = work / case.split()[0]
    name = config(overrides, run_dir).data.name
    data = [f"data.root={roots[name]}", "data.mapping.per_class=null"] if name in roots else []
    reads = counted_run(config([*overrides, *data, *SHORT], run_dir))
    sites = Counter(f"{r.kind} at {r.site}" for r in reads.in_windows("train"))
    return {"case": case, "overrides": overrides, "steps": dict(reads.steps_seen),
            "per_train_step": reads.per_step("train"), "per_logging_step": reads.per_step("train_logging"),
            "per_validation_step": reads.per_step("validation_step"),
            "top_train_site": sites.most_common(1)[0][0] if sites else "",
            "train_sites": dict(sites.most_common())}


COLUMNS = ("case", "non-logging steps", "reads / non-logging step", "reads / logging step", "reads / validation step",
           "most frequent read in a non-logging step")


def cells(row: dict[str, Any]) -> list[str]:
    return [row["case"], str(row["steps"].get("train", 0)), f"{row['per_train_step']:.2f}",
            f"{row['per_logging_step']:.2f}", f"{row['per_validation_step']:.2f}", row["top_train_site"] or "–"]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES), metavar="CASE")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--markdown", type=Path, default=None)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="device-reads-") as tmp:
        roots = synthetic_roots(Path(tmp) / "data")
        rows = [count(case, CASES[case], roots, Path(tmp) / "runs") for case in args.cases]
    title = f"device reads per step, 2 epochs of 12 batches of 8, a logging step every 5 — {cpu_model()}"
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="left" if column.startswith(("case", "most")) else "right")
    for row in rows:
        table.add_row(*cells(row))
    Console(width=200).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        args.markdown.write_text(f"{title}\n\n{markdown_table(COLUMNS, [cells(r) for r in rows])}\n")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
