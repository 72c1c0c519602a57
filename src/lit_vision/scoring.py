"""Score and report models that are not Lightning runs (XGBoost, scikit-learn baselines, ensembles).

Same torchmetrics collections, same ``metrics.json`` / ``predictions.csv`` / console table as a neural run,
so every model of a notebook lands in one comparable table (``python -m lit_vision.compare``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from lit_vision import reporting
from lit_vision.metrics import classification_metrics, confusion_matrix, metric_input


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
    return reporting.build_metrics_record(scalars, confusion, class_names, extra=extra)


def write_report(out: Path, record: Mapping[str, Any], test_probs: Any, test_targets: Any,
                 class_names: Sequence[str], sources: Sequence[str] | None, title: str) -> None:
    """``metrics.json``, ``predictions.csv`` and the console table, like a neural run."""
    out.mkdir(parents=True, exist_ok=True)
    reporting.write_json(out / "metrics.json", record)
    reporting.write_predictions(out / "predictions.csv", as_tensor(test_probs, torch.float32),
                                as_tensor(test_targets, torch.int64), list(class_names), list(sources or []))
    reporting.print_metrics(record, title=title)
