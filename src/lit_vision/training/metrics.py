"""torchmetrics collections with stable names: binary and multiclass differ only in the task."""

from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryConfusionMatrix,
    BinaryF1Score,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int, prefix: str, full: bool = True) -> MetricCollection:
    """``acc`` always; with ``full`` also precision/recall/f1/auroc (multiclass: macro, plus ``*_weighted``).

    Binary metrics take the positive-class probability, multiclass ones the probability matrix.
    """
    if num_classes == 2:
        metrics = {"acc": BinaryAccuracy()}
        if full:
            metrics |= {"precision": BinaryPrecision(), "recall": BinaryRecall(), "f1": BinaryF1Score(),
                        "auroc": BinaryAUROC()}
    else:
        k = num_classes
        metrics = {"acc": MulticlassAccuracy(k, average="micro")}
        if full:
            metrics |= {
                "precision": MulticlassPrecision(k, average="macro"),
                "recall": MulticlassRecall(k, average="macro"),
                "f1": MulticlassF1Score(k, average="macro"),
                "auroc": MulticlassAUROC(k, average="macro"),
                "precision_weighted": MulticlassPrecision(k, average="weighted"),
                "recall_weighted": MulticlassRecall(k, average="weighted"),
                "f1_weighted": MulticlassF1Score(k, average="weighted"),
            }
    return MetricCollection(metrics, prefix=prefix)


def confusion_matrix(num_classes: int) -> BinaryConfusionMatrix | MulticlassConfusionMatrix:
    return BinaryConfusionMatrix() if num_classes == 2 else MulticlassConfusionMatrix(num_classes)


def metric_input(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """What the metrics take: P(positive) for binary, the full (N, K) matrix otherwise."""
    return probs[:, 1] if num_classes == 2 else probs
