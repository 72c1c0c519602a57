"""Everything a run reports, for neural and non-neural models alike, in one format.

* scoring: torchmetrics on (probabilities, targets) for models that are not Lightning runs (XGBoost,
  scikit-learn baselines, ensembles) — the same collections a Lightning run logs;
* files: ``metrics.json`` (stable names such as ``test/acc``), ``predictions.csv``, per-epoch ``history.csv``;
* wall time: training seconds and the time to reach validation-accuracy thresholds, from ``history.csv``;
* the per-class classification report (scikit-learn's ``classification_report`` shape, from torchmetrics);
* console tables (rich).

Plots are drawn by :mod:`lit_vision.runs.plots`; multirun summaries by :mod:`lit_vision.runs.sweep_summary`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)

from lit_vision.checks import fraction_list
from lit_vision.runs import formats
from lit_vision.runs.records import RunDir
from lit_vision.training.metrics import classification_metrics, confusion_matrix, metric_input

log = logging.getLogger("lit_vision")

MAIN_METRICS = ("acc", "precision", "recall", "f1", "auroc")
AVERAGES = ("macro avg", "weighted avg")


# --- records and files ---------------------------------------------------------------------
def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def confusion_counts(confusion: torch.Tensor) -> dict[str, int]:
    """Binary TP/FP/FN/TN from a confusion matrix whose rows are targets and columns predictions."""
    if confusion.shape != (2, 2):
        return {}
    tn, fp, fn, tp = (int(v) for v in confusion.flatten().tolist())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def build_metrics_record(scalars: Mapping[str, Any], confusion: torch.Tensor | None,
                         class_names: Sequence[str], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run reports, with stable names (``test/acc`` …) and plain Python values."""
    record: dict[str, Any] = {k: float(_plain(v)) for k, v in sorted(scalars.items())
                              if k.startswith(("test/", "val/")) and not isinstance(_plain(v), list)}
    record["class_names"] = list(class_names)
    if confusion is not None:
        record["confusion_matrix"] = confusion.tolist()
        record["counts"] = confusion_counts(confusion)
        record["support"] = {name: int(n) for name, n in zip(class_names, confusion.sum(dim=1).tolist())}
    record.update(extra or {})
    return record


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    """JSON that may hold tensors (written as numbers or lists)."""
    formats.write_json(path, record, default=_plain)


def write_metrics(out: Path, record: Mapping[str, Any]) -> Path:
    """``<out>/metrics.json`` (:meth:`~lit_vision.runs.records.RunDir.write_metrics`: portable paths); tensors as
    numbers or lists."""
    return RunDir(out).write_metrics(record, default=_plain)


def write_predictions(path: Path, probs: Any, targets: Any, class_names: Sequence[str],
                      sources: Sequence[str] | None = None, pred: Any = None) -> None:
    """One row per test image: index, source file (when known), true label, prediction (``pred``, e.g. the
    decision at an operating point; argmax by default), class probabilities."""
    probs = torch.as_tensor(np.asarray(probs))
    pred = probs.argmax(dim=1) if pred is None else torch.as_tensor(np.asarray(pred))
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "source", "target", "target_name", "pred", "pred_name"]
                   + [f"p_{c}" for c in class_names])
        for i in range(len(targets)):
            t, p = int(targets[i]), int(pred[i])
            src = sources[i] if sources and i < len(sources) else ""
            w.writerow([i, src, t, class_names[t], p, class_names[p]] + [f"{v:.6f}" for v in probs[i].tolist()])


def metrics_table(record: Mapping[str, Any], title: str = "metrics") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    names = [m for m in MAIN_METRICS] + ["loss"] + sorted(
        {k.split("/", 1)[1] for k in record if "/" in k} - set(MAIN_METRICS) - {"loss"})
    for name in names:
        vals = [record.get(f"{split}/{name}") for split in ("val", "test")]
        if all(v is None for v in vals):
            continue
        table.add_row(name, *("" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
                              for v in vals))
    if record.get("counts"):
        c = record["counts"]
        table.add_row("TP/FP/FN/TN", "", f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}")
    return table


def print_metrics(record: Mapping[str, Any], title: str = "metrics") -> None:
    Console().print(metrics_table(record, title))



def write_run_report(out: Path, record: dict[str, Any], model: Any, dm: Any, report: Mapping[str, Any],
                     predictions: tuple[Any, Any] | None = None) -> None:
    """A Lightning run's report: metrics.json (with the classification report), predictions.csv, tables, plots.
    ``predictions``: (probabilities, decisions) of the deployed model on the test images for predictions.csv
    (training passes them); else the test step's probabilities at argmax."""
    from lit_vision.runs import plots

    outputs = getattr(model, "test_outputs", {})
    if "probs" in outputs and report["classification_report"]:
        record["classification_report"] = classification_report(outputs["probs"], outputs["targets"],
                                                                 dm.class_names)
    write_metrics(out, record)
    if "probs" in outputs and dm.test_set is not None:
        probs, pred = predictions if predictions is not None else (outputs["probs"], None)
        write_predictions(RunDir(out).predictions_file, probs, outputs["targets"], dm.class_names, dm.test_set.sources,
                          pred)
    print_metrics(record, title=f"{dm.name}: test with the best checkpoint")
    if "classification_report" in record:
        print_report(record["classification_report"])
    if report["plots"]:
        plots.write_run_plots(out, model, dm, misclassified=int(report["misclassified"]),
                              operating_point=record.get("operating_point"))
    log.info("artifacts written to %s", out)


# --- wall time -------------------------------------------------------------------------------------
#: history.csv columns written by :class:`~lit_vision.training.callbacks.EpochTimer`
EPOCH_SECONDS, TRAIN_SECONDS = "time/epoch_seconds", "time/train_seconds"


def threshold_key(threshold: float) -> str:
    """How a threshold names its entry in ``time_to_val_acc``: ``0.8`` → ``"0.8"``."""
    return repr(float(threshold))


def time_to_thresholds(history_rows: Sequence[Mapping[str, float]], thresholds: Sequence[float],
                       metric: str = "val/acc") -> dict[str, dict[str, Any] | None]:
    """For each threshold (in the given order): the first epoch at whose end ``metric`` was >= the threshold, as
    ``{"epoch": <history.csv epoch, 0-based>, "seconds": <time/train_seconds of that row, or None>}``; ``None``
    when no epoch reached it. Rows without ``metric`` (epochs without validation) are skipped."""
    rows = sorted((r for r in history_rows if metric in r), key=lambda r: r["epoch"])
    result: dict[str, dict[str, Any] | None] = {}
    for threshold in thresholds:
        hit = next((r for r in rows if r[metric] >= threshold), None)
        result[threshold_key(threshold)] = None if hit is None else {
            "epoch": int(hit["epoch"]), "seconds": hit.get(TRAIN_SECONDS)}
    return result


def train_seconds(history_rows: Sequence[Mapping[str, float]], fallback: float | None = None) -> float | None:
    """Training seconds of the fit: ``time/train_seconds`` of the last epoch in ``history.csv``, else ``fallback``
    (the timer's own total when there is no history, e.g. ``logger=none``)."""
    timed = [r for r in history_rows if TRAIN_SECONDS in r]
    return max(timed, key=lambda r: r["epoch"])[TRAIN_SECONDS] if timed else fallback


def timing_record(history_rows: Sequence[Mapping[str, float]], time_to: Any,
                  fallback_seconds: float | None = None) -> dict[str, Any]:
    """``train_seconds`` and ``time_to_val_acc`` for ``metrics.json``. ``time_to_val_acc`` is ``None`` as a whole
    when there is no per-epoch history (no logger, ``fast_dev_run``): unknown, which is not "never reached"."""
    thresholds = fraction_list(time_to, "report.time_to")
    return {"train_seconds": train_seconds(history_rows, fallback_seconds),
            "time_to_val_acc": time_to_thresholds(history_rows, thresholds) if history_rows else None}


def timing_line(record: Mapping[str, Any]) -> str:
    """One line, e.g. ``trained 12.3 s; val/acc reached 0.8 at epoch 3 (4.1 s), 0.9 never``."""
    seconds = record.get("train_seconds")
    line = "trained " + ("? s" if seconds is None else f"{seconds:.1f} s")
    reached = record.get("time_to_val_acc")
    if reached is None:
        return line + "; no per-epoch history, so no time to val/acc"
    parts = []
    for key, hit in reached.items():
        if hit is None:
            parts.append(f"{key} never")
        else:
            at = "" if hit["seconds"] is None else f" ({hit['seconds']:.1f} s)"
            parts.append(f"{key} at epoch {hit['epoch']}{at}")
    return line + ("; val/acc reached " + ", ".join(parts) if parts else "")


# --- classification report -------------------------------------------------------------------
def classification_report(probs: torch.Tensor, targets: torch.Tensor,
                          class_names: Sequence[str]) -> dict[str, Any]:
    """Report from (N, K) class probabilities and integer targets; predictions are the argmax."""
    k = len(class_names)
    preds, targets = probs.argmax(dim=1), targets.long()
    per_class = {
        "precision": multiclass_precision(preds, targets, k, average=None),
        "recall": multiclass_recall(preds, targets, k, average=None),
        "f1-score": multiclass_f1_score(preds, targets, k, average=None),
    }
    support = torch.bincount(targets, minlength=k).float()
    report: dict[str, Any] = {
        name: {m: float(v[i]) for m, v in per_class.items()} | {"support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    total = float(support.sum())
    report["accuracy"] = float(multiclass_accuracy(preds, targets, k, average="micro"))
    present = support > 0  # macro over the classes that occur, as scikit-learn's labels= default
    report["macro avg"] = {m: float(v[present].mean()) for m, v in per_class.items()} | {"support": int(total)}
    report["weighted avg"] = ({m: float((v * support).sum() / max(total, 1.0)) for m, v in per_class.items()}
                              | {"support": int(total)})
    return report


def report_table(report: Mapping[str, Any], title: str = "classification report (test)") -> Table:
    table = Table(title=title)
    table.add_column("class")
    for col in ("precision", "recall", "f1-score", "support"):
        table.add_column(col, justify="right")
    for name, row in report.items():
        if name == "accuracy":
            continue
        if name == AVERAGES[0]:
            table.add_section()
            table.add_row("accuracy", "", "", f"{report['accuracy']:.4f}", str(row["support"]))
        table.add_row(name, f"{row['precision']:.4f}", f"{row['recall']:.4f}", f"{row['f1-score']:.4f}",
                      str(row["support"]))
    return table


def print_report(report: Mapping[str, Any]) -> None:
    Console().print(report_table(report))


# --- scoring models that are not Lightning runs --------------------------------------------------
def as_tensor(values: Any, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values), dtype=dtype)


def score_split(probs: Any, targets: Any, num_classes: int, split: str) -> tuple[dict[str, float], torch.Tensor]:
    """``{split}/acc``, precision, recall, f1, auroc (multiclass: macro + weighted) and ``{split}/loss``
    (cross-entropy of the probabilities), plus the confusion matrix (rows targets, columns predictions)."""
    p = as_tensor(probs, torch.float32)
    y = as_tensor(targets, torch.int64)
    metrics = classification_metrics(num_classes, f"{split}/")
    scalars = {k: float(v) for k, v in metrics(metric_input(p, num_classes), y).items()}
    scalars[f"{split}/loss"] = float(torch.nn.functional.nll_loss(p.clamp_min(1e-7).log(), y))
    confusion = confusion_matrix(num_classes)(metric_input(p, num_classes), y)
    return scalars, confusion


def build_record(splits: Mapping[str, tuple[Any, Any]], class_names: Sequence[str],
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A ``metrics.json`` record from ``{"val": (probs, targets), "test": (probs, targets)}``."""
    scalars: dict[str, float] = {}
    confusion = None
    for split, (probs, targets) in splits.items():
        values, matrix = score_split(probs, targets, len(class_names), split)
        scalars |= values
        if split == "test":
            confusion = matrix
    return build_metrics_record(scalars, confusion, class_names, extra=extra)


def write_report(out: Path, record: Mapping[str, Any], test_probs: Any, test_targets: Any,
                 class_names: Sequence[str], sources: Sequence[str] | None, title: str) -> None:
    """``metrics.json``, ``predictions.csv`` and the console table, like a neural run."""
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, record)
    write_predictions(RunDir(out).predictions_file, as_tensor(test_probs, torch.float32),
                                as_tensor(test_targets, torch.int64), list(class_names), list(sources or []))
    print_metrics(record, title=title)
