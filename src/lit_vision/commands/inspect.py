"""``python -m lit_vision.inspect data=...``: look at a dataset before training on it.

The exploratory step every notebook opens with, for any ``data=`` config (same config tree as training,
so the label mapping, balancing and validation split shown are exactly what training would use):

- ``samples.png``: a grid of sample images per class, titled with their labels;
- ``class_counts.png``: a bar chart of the class counts of every split;
- ``mean_images.png``: the mean image of every class (train split);
- ``summary.json`` and a printed table: counts per split and class, pixel mean/std per channel.

Examples::

    python -m lit_vision.inspect data=fashion_mnist data.root=../shared/datasets
    python -m lit_vision.inspect data=fer_happy_sad data.root=../shared/datasets/fer2013 inspect.samples_per_class=12
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from lit_vision.checks import positive_int
from lit_vision.commands.runner import hydra_command  # noqa: E402
from lit_vision.data.arrays import ImageArrays  # noqa: E402
from lit_vision.data.streaming import require_in_memory
from lit_vision.runs.plots import show_image
from lit_vision.training.builders import build_datamodule  # noqa: E402

log = logging.getLogger("lit_vision.inspect")


def pixel_stats(arrays: ImageArrays, chunk: int = 8192) -> tuple[list[float], list[float]]:
    """Exact per-channel mean and std in [0, 1] units over every image (chunked: works on memmaps)."""
    channels = arrays.channels
    total = np.zeros(channels)
    total_sq = np.zeros(channels)
    count = 0
    for start in range(0, len(arrays), chunk):
        x = np.asarray(arrays.images[start:start + chunk], dtype=np.float64) / 255.0
        total += x.sum(axis=(0, 2, 3))
        total_sq += (x ** 2).sum(axis=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(total_sq / max(count, 1) - mean ** 2, 0.0))
    return [float(m) for m in mean], [float(s) for s in std]


def plot_samples(arrays: ImageArrays, path: Path, per_class: int = 8, seed: int = 0) -> Path:
    """One row per class: ``per_class`` seeded random images, each titled with its label."""
    rng = np.random.default_rng(seed)
    names = arrays.class_names
    fig, axes = plt.subplots(len(names), per_class, figsize=(1.3 * per_class, 1.4 * len(names)), squeeze=False)
    for label, name in enumerate(names):
        rows = np.flatnonzero(arrays.labels == label)
        picked = np.sort(rng.choice(rows, size=min(per_class, len(rows)), replace=False)) if len(rows) else []
        for j, ax in enumerate(axes[label]):
            if j < len(picked):
                show_image(ax, np.asarray(arrays.images[picked[j]]))
                ax.set_title(f"{label}: {name}", fontsize=7)
            else:
                ax.axis("off")
    fig.tight_layout()
    return _save(fig, path)


def plot_class_counts(counts: Mapping[str, Mapping[str, int]], path: Path) -> Path:
    """One bar chart per split, classes on the x axis, counts written on the bars."""
    fig, axes = plt.subplots(1, len(counts), figsize=(4.5 * len(counts), 3.8), squeeze=False)
    for ax, (split, per_class) in zip(axes[0], counts.items()):
        bars = ax.bar(range(len(per_class)), list(per_class.values()), color="tab:blue")
        ax.bar_label(bars, fontsize=7)
        ax.set_xticks(range(len(per_class)), list(per_class), rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{split} ({sum(per_class.values())} images)")
        ax.set_ylabel("count")
    fig.tight_layout()
    return _save(fig, path)


def class_means(arrays: ImageArrays, chunk: int = 8192) -> np.ndarray:
    """(K, C, H, W) float mean image of every class, in [0, 255]."""
    k = len(arrays.class_names)
    sums = np.zeros((k, *arrays.images.shape[1:]))
    for start in range(0, len(arrays), chunk):
        x = np.asarray(arrays.images[start:start + chunk], dtype=np.float64)
        y = arrays.labels[start:start + chunk]
        for label in np.unique(y):
            sums[label] += x[y == label].sum(axis=0)
    counts = np.bincount(arrays.labels, minlength=k).reshape(-1, 1, 1, 1)
    return sums / np.maximum(counts, 1)


def plot_mean_images(arrays: ImageArrays, path: Path) -> Path:
    means = class_means(arrays)
    cols = min(len(means), 10)
    rows = -(-len(means) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.8 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, name) in enumerate(zip(axes.flat, arrays.class_names)):
        ax.axis("on")
        show_image(ax, means[i])
        ax.set_title(name, fontsize=8)
    fig.suptitle("mean image per class (train)", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def summarize(splits: Mapping[str, ImageArrays]) -> dict[str, Any]:
    train = splits["train"]
    mean, std = pixel_stats(train)
    return {"class_names": list(train.class_names), "channels": train.channels,
            "image_size": list(train.image_size),
            "counts": {name: arrays.class_counts() for name, arrays in splits.items()},
            "sizes": {name: len(arrays) for name, arrays in splits.items()},
            "pixel_mean": mean, "pixel_std": std}


def print_summary(summary: Mapping[str, Any], title: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title=title)
    table.add_column("class")
    splits = list(summary["counts"])
    for split in splits:
        table.add_column(split, justify="right")
    for name in summary["class_names"]:
        table.add_row(name, *(str(summary["counts"][s][name]) for s in splits))
    table.add_row("total", *(str(summary["sizes"][s]) for s in splits), style="bold")
    console.print(table)
    c, (h, w) = summary["channels"], summary["image_size"]
    mean = ", ".join(f"{m:.4f}" for m in summary["pixel_mean"])
    std = ", ".join(f"{s:.4f}" for s in summary["pixel_std"])
    console.print(f"images {c}x{h}x{w}; train pixel mean [{mean}], std [{std}] (pixels / 255)")


def inspect(cfg: DictConfig, out_dir: Path) -> dict[str, Any]:
    """Load ``cfg.data`` exactly as training would and write the PNGs and summary.json to ``out_dir``."""
    require_in_memory(cfg.data, "inspect")
    dm = build_datamodule(cfg)
    splits = {name: arrays for name, arrays in
              (("train", dm.train_set), ("val", dm.val_set), ("test", dm.test_set)) if arrays is not None}
    summary = summarize(splits)
    files = [plot_samples(splits["train"], out_dir / "samples.png", int(cfg.inspect.samples_per_class), int(cfg.seed)),
             plot_class_counts(summary["counts"], out_dir / "class_counts.png"),
             plot_mean_images(splits["train"], out_dir / "mean_images.png")]
    summary["files"] = [str(f) for f in files]
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print_summary(summary, f"{dm.name}: images per split and class")
    log.info("inspection written to %s", out_dir)
    return summary


def run(cfg: DictConfig) -> dict[str, Any]:
    return inspect(cfg, Path(cfg.paths.output_dir))


def check_options(cfg: DictConfig) -> None:
    positive_int(cfg.inspect.samples_per_class, "inspect.samples_per_class")


main = hydra_command("inspect", run, check_options)


if __name__ == "__main__":
    main()
