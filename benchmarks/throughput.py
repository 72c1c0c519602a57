"""Training images/s of the lit_vision pipeline vs a plain PyTorch loop: same net, batch, data, precision.

    python benchmarks/throughput.py --data ../shared/datasets/cifar10-jpeg --model horse_cnn --batch 500
    python benchmarks/throughput.py --data synthetic --model model_s --batch 64 --precision 32 bf16-mixed

Both sides train on the same uint8 CIFAR tensors held in memory. The plain loop does exactly what a
hand-written script would (index a shuffled batch, /255, normalise, forward, loss, backward, step); the
lit_vision side is ``Trainer.fit`` on ``VisionDataModule`` + ``ImageClassifier`` with its train metrics on
and logging, checkpointing and the progress bar off. Timing skips warm-up steps; the two are interleaved
over ``--repeats`` rounds and the median is reported, so background load hits both alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from rich.console import Console
from rich.table import Table

from lit_vision.training.builders import build_classifier
from lit_vision.config import CONF_DIR
from lit_vision.data import ImageArrays, SourceSplits, VisionDataModule, register_source


def load_cifar(data: str, cache_dir: str) -> SourceSplits:
    if data == "synthetic":
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(20_000, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=20_000).astype(np.int64)
        arrays = ImageArrays(images, labels, [str(i) for i in range(10)])
        return SourceSplits(train=arrays, test=arrays.subset(np.arange(1000)))
    from lit_vision.data.sources import load_cifar10

    return load_cifar10(root=data, cache_dir=cache_dir)


class TimingCallback(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.images = warmup, 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):  # noqa: ANN001
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):  # noqa: ANN001
        if batch_idx >= self.warmup:
            self.images += len(batch[1])
        self.end = time.perf_counter()

    @property
    def rate(self) -> float:
        return self.images / (self.end - self.start)


def lit_images_per_s(dm: VisionDataModule, model_cfg, steps: int, warmup: int, precision: str) -> float:
    torch.manual_seed(0)
    model = build_classifier(model_cfg, dm)
    timer = TimingCallback(warmup)
    trainer = L.Trainer(accelerator="cpu", devices=1, precision=precision, max_epochs=1,
                        limit_train_batches=warmup + steps, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer])
    trainer.fit(model, datamodule=dm)
    return timer.rate


def plain_images_per_s(dm: VisionDataModule, model_cfg, steps: int, warmup: int, precision: str) -> float:
    torch.manual_seed(0)
    model = build_classifier(model_cfg, dm)  # same net and normalisation constants
    net, mean, std = model.net.train(), model.mean, model.std
    opt_cfg = OmegaConf.to_container(model_cfg.optimizer)
    name = opt_cfg.pop("name")
    opt = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD,
           "adamw": torch.optim.AdamW}[name](net.parameters(), **opt_cfg)
    images = torch.from_numpy(np.ascontiguousarray(dm.train_set.images))
    labels = torch.from_numpy(np.asarray(dm.train_set.labels))
    order = torch.randperm(len(labels))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
    seen, start = 0, 0.0
    for step in range(warmup + steps):
        if step == warmup:
            start = time.perf_counter()
        idx = order[(step * dm.batch_size) % len(order):][: dm.batch_size]
        x = (images[idx].float().div_(255) - mean) / std
        y = labels[idx]
        with autocast:
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            seen += len(y)
    return seen / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic", help="'synthetic' or a CIFAR-10 root (batches or image folders)")
    p.add_argument("--model", default="horse_cnn", help="a conf/model preset (horse_cnn, model_s, cnn, …)")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--precision", nargs="+", default=["32", "bf16-mixed"])
    p.add_argument("--cache-dir", default=str(Path(__file__).resolve().parents[1] / "data" / "cache"))
    args = p.parse_args(argv)

    register_source("benchmark")(lambda **_: load_cifar(args.data, args.cache_dir))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={args.model}"])
    dm = VisionDataModule(source="benchmark", batch_size=args.batch, eval_batch_size=512, val_fraction=0.02)
    dm.setup("fit")
    table = Table(title=f"training images/s — {args.model}, batch {args.batch}, {args.data}, "
                        f"{torch.get_num_threads()} threads, median of {args.repeats}")
    for col in ("precision", "plain PyTorch", "lit_vision", "ratio"):
        table.add_column(col, justify="right")
    for precision in args.precision:
        plain, lit = [], []
        for _ in range(args.repeats):
            plain.append(plain_images_per_s(dm, cfg.model, args.steps, args.warmup, precision))
            lit.append(lit_images_per_s(dm, cfg.model, args.steps, args.warmup, precision))
        p_med, l_med = statistics.median(plain), statistics.median(lit)
        table.add_row(precision, f"{p_med:,.0f}", f"{l_med:,.0f}", f"{l_med / p_med:.3f}")
    Console().print(table)


if __name__ == "__main__":
    sys.exit(main())
