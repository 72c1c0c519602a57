"""Per-class precision, recall, F1 and support (scikit-learn's ``classification_report``, from torchmetrics).

The dict has the same shape as ``sklearn.metrics.classification_report(..., output_dict=True)``:
one entry per class name, then ``accuracy``, ``macro avg`` and ``weighted avg``.
Binary tasks get a row for each of the two classes, like scikit-learn.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch
from rich.console import Console
from rich.table import Table
from torchmetrics.functional.classification import (
    multiclass_accuracy, multiclass_f1_score, multiclass_precision, multiclass_recall,
)

AVERAGES = ("macro avg", "weighted avg")


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
