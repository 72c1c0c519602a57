"""The plots a run is judged by, as PNG files under ``<run dir>/plots/`` (and TensorBoard images).

torchmetrics computes (confusion matrix, ROC, precision-recall, AUC); matplotlib only draws.
Every ``plot_*`` function returns a :class:`~matplotlib.figure.Figure`; :func:`write_run_plots`
saves them, logs them to any active TensorBoard logger and closes them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: headless servers, tests, sweeps

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from torchmetrics.functional.classification import (  # noqa: E402
    binary_auroc,
    binary_average_precision,
    binary_precision_recall_curve,
    binary_roc,
    multiclass_auroc,
    multiclass_confusion_matrix,
    multiclass_roc,
)

from lit_vision.runs.records import RunDir  # noqa: E402

log = logging.getLogger(__name__)

#: metrics drawn as learning curves when present in history.csv (train and/or val)
CURVE_METRICS = ("loss", "acc", "f1", "auroc")


# --- learning curves ---------------------------------------------------------------------------
def plot_learning_curves(history: Sequence[Mapping[str, float]]) -> Figure | None:
    """Loss and main metrics, train vs validation per epoch, plus the learning rate (``lr-*`` columns)."""
    if not history:
        return None
    keys = set().union(*history)
    metrics = [m for m in CURVE_METRICS if f"train/{m}" in keys or f"val/{m}" in keys]
    lr_keys = sorted(k for k in keys if k.startswith("lr-"))
    panels = len(metrics) + (1 if lr_keys else 0)
    if panels == 0:
        return None
    cols = min(3, panels)
    fig, grid = plt.subplots(math.ceil(panels / cols), cols, figsize=(4.4 * cols, 3.4 * math.ceil(panels / cols)),
                             squeeze=False)
    for ax in grid.flat[panels:]:
        ax.axis("off")
    axes = list(grid.flat[:panels])
    for ax, metric in zip(axes, metrics):
        for split, style in (("train", "-o"), ("val", "-s")):
            pts = [(r["epoch"], r[f"{split}/{metric}"]) for r in history if f"{split}/{metric}" in r]
            if pts:
                ax.plot(*zip(*pts), style, ms=3, label=split)
        ax.set(title=metric, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    if lr_keys:
        ax = axes[-1]
        for key in lr_keys:
            pts = [(r["epoch"], r[key]) for r in history if key in r]
            ax.plot(*zip(*pts), "-o", ms=3, label=key.removeprefix("lr-"))
        if all(r[k] > 0 for r in history for k in lr_keys if k in r):
            ax.set_yscale("log")
        ax.set(title="learning rate", xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    fig.tight_layout()
    return fig


# --- confusion matrix --------------------------------------------------------------------------
def confusion_from_outputs(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(K, K) counts, rows = true class, columns = predicted class (argmax of the probabilities)."""
    return multiclass_confusion_matrix(probs.argmax(dim=1), targets, num_classes=probs.shape[1])


def plot_confusion_matrix(confusion: torch.Tensor | np.ndarray, class_names: Sequence[str]) -> Figure:
    """Counts and row-normalised (recall per true class) side by side."""
    counts = np.asarray(confusion, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    normed = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=float), where=rows > 0)
    k = len(class_names)
    side = max(4.0, 0.55 * k + 2.5)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1, side))
    for ax, data, title, fmt in ((axes[0], counts, "counts", "d"), (axes[1], normed, "row-normalised", ".2f")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        ax.set_xticks(range(k), class_names, rotation=45, ha="right")
        ax.set_yticks(range(k), class_names)
        ax.set(xlabel="predicted", ylabel="true", title=title)
        thresh = data.max() / 2 if data.max() > 0 else 0.5
        if k <= 20:
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > thresh else "black")
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


# --- ROC and precision-recall ------------------------------------------------------------------
def plot_roc(probs: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str]) -> Figure:
    """Binary: one ROC curve of the positive class (index 1). Multiclass: one-vs-rest per class, AUC each."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    targets = targets.long()
    if probs.shape[1] == 2:
        fpr, tpr, _ = binary_roc(probs[:, 1], targets)
        auc = binary_auroc(probs[:, 1], targets).item()
        ax.plot(fpr, tpr, label=f"{class_names[1]} (AUC {auc:.3f})")
    else:
        k = probs.shape[1]
        fprs, tprs, _ = multiclass_roc(probs, targets, num_classes=k)
        aucs = multiclass_auroc(probs, targets, num_classes=k, average="none")
        for i in range(k):
            ax.plot(fprs[i], tprs[i], lw=1.2, label=f"{class_names[i]} ({aucs[i].item():.3f})")
        macro = multiclass_auroc(probs, targets, num_classes=k, average="macro").item()
        ax.set_title(f"one-vs-rest ROC, macro AUC {macro:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.02))
    if probs.shape[1] == 2:
        ax.set_title("ROC")
    ax.legend(fontsize=7 if probs.shape[1] > 5 else 9, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_precision_recall(probs: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str],
                          operating_point: Mapping[str, Any] | None = None) -> Figure:
    """Binary precision-recall curve of the positive class, with average precision, the base rate and (when
    given) the operating point's test precision/recall."""
    targets = targets.long()
    precision, recall, _ = binary_precision_recall_curve(probs[:, 1], targets)
    ap = binary_average_precision(probs[:, 1], targets).item()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(recall, precision, label=f"{class_names[1]} (AP {ap:.3f})")
    base = targets.float().mean().item()
    ax.axhline(base, ls="--", color="grey", lw=0.8, label=f"base rate {base:.3f}")
    test = (operating_point or {}).get("test")
    if test:
        ax.plot([test["recall"]], [test["precision"]], "o", color="crimson",
                label=f"{operating_point['goal']}: threshold {operating_point['threshold']:.3f}")
    ax.set(xlabel="recall", ylabel="precision", title="precision-recall", xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# --- images ------------------------------------------------------------------------------------
def show_image(ax: Any, image: np.ndarray) -> None:
    """Draw a (C, H, W) image (uint8, or float in [0, 255]) on ``ax`` without ticks: gray for one channel."""
    image = np.asarray(image)
    if image.shape[0] == 1:
        ax.imshow(image[0], cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(np.clip(image.transpose(1, 2, 0), 0, 255).astype(np.uint8))
    ax.set_xticks([])
    ax.set_yticks([])


# --- misclassified images ----------------------------------------------------------------------
def misclassified_indices(probs: torch.Tensor, targets: torch.Tensor, n: int) -> list[int]:
    """Up to ``n`` wrong test predictions, most confident first (the most instructive mistakes)."""
    conf, pred = probs.max(dim=1)
    wrong = torch.nonzero(pred != targets).flatten()
    order = torch.argsort(conf[wrong], descending=True)
    return wrong[order][:n].tolist()


def plot_misclassified(images: np.ndarray, probs: torch.Tensor, targets: torch.Tensor,
                       class_names: Sequence[str], n: int = 10) -> Figure | None:
    """A grid of misclassified test images (uint8 (N, C, H, W)) titled true / predicted (confidence)."""
    idx = misclassified_indices(probs, targets, n)
    if not idx:
        return None
    cols = min(5, len(idx))
    rows = math.ceil(len(idx) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.3 * cols, 2.8 * rows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, idx):
        p = int(probs[i].argmax())
        show_image(ax, images[i])
        ax.set_title(f"true {class_names[int(targets[i])]}\npred {class_names[p]} ({probs[i, p]:.2f})",
                     fontsize=8)
    fig.suptitle(f"{len(idx)} misclassified test images (most confident first)", fontsize=10)
    fig.tight_layout()
    return fig


# --- orchestration -----------------------------------------------------------------------------
def run_figures(history: Sequence[Mapping[str, float]], outputs: Mapping[str, torch.Tensor],
                class_names: Sequence[str], images: np.ndarray | None = None,
                misclassified: int = 10, operating_point: Mapping[str, Any] | None = None) -> dict[str, Figure]:
    """Every figure the available data supports, keyed by file stem."""
    figures: dict[str, Figure | None] = {"learning_curves": plot_learning_curves(history)}
    probs, targets = outputs.get("probs"), outputs.get("targets")
    if probs is not None and targets is not None and len(targets) > 0:
        probs, targets = probs.float(), targets.long()
        figures["confusion_matrix"] = plot_confusion_matrix(confusion_from_outputs(probs, targets), class_names)
        if len(torch.unique(targets)) > 1:  # ROC needs both positives and negatives
            figures["roc"] = plot_roc(probs, targets, class_names)
            if probs.shape[1] == 2:
                figures["precision_recall"] = plot_precision_recall(probs, targets, class_names, operating_point)
        if images is not None and misclassified > 0:
            n = min(len(images), len(targets))  # limit_test_batches may test a prefix of the test set
            figures["misclassified"] = plot_misclassified(images[:n], probs[:n], targets[:n], class_names,
                                                          misclassified)
    elif outputs.get("confusion_matrix") is not None:
        figures["confusion_matrix"] = plot_confusion_matrix(_square(outputs["confusion_matrix"]), class_names)
    return {name: fig for name, fig in figures.items() if fig is not None}


def _square(confusion: torch.Tensor) -> torch.Tensor:
    return confusion if confusion.ndim == 2 else confusion.reshape(2, 2)


def save_figures(figures: Mapping[str, Figure], out_dir: Path, loggers: Iterable[Any] = (),
                 step: int = 0) -> list[Path]:
    """Write ``<out_dir>/<name>.png``, log each figure to TensorBoard loggers, close the figures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tensorboards = [lg for lg in loggers if type(lg).__name__ == "TensorBoardLogger"]
    paths = []
    for name, fig in figures.items():
        path = out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        for tb in tensorboards:
            tb.experiment.add_figure(f"plots/{name}", fig, global_step=step, close=False)
        plt.close(fig)
        paths.append(path)
    for tb in tensorboards:
        tb.experiment.flush()
    return paths


def write_run_plots(out: Path, model: Any, dm: Any, misclassified: int = 10,
                    operating_point: Mapping[str, Any] | None = None) -> list[Path]:
    """All plots of a finished run into ``<out>/plots/``; called by ``train.write_artifacts``."""
    test_set = getattr(dm, "test_set", None)
    run = RunDir(out)
    figures = run_figures(run.history(), getattr(model, "test_outputs", {}) or {},
                          dm.class_names, test_set.images if test_set is not None else None, misclassified,
                          operating_point)
    # LightningModule.loggers / global_step: [] and 0 when no trainer is attached
    paths = save_figures(figures, run.plots_dir, getattr(model, "loggers", []), getattr(model, "global_step", 0))
    log.info("plots: %s", ", ".join(p.name for p in paths))
    return paths
