"""torchmetrics collections with stable names: binary and multiclass differ only in the task."""

from __future__ import annotations

import lightning as L
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


def logs_written_this_step(trainer: L.Trainer) -> bool:
    """Will the loggers write what this training step logs (every ``trainer.log_every_n_steps`` batches)?

    Lightning counts the batches that stepped, across resumes, which is neither ``global_step`` (optimizer steps:
    several per batch with ``steps_per_execution``) nor the batch index. Logging on every step and letting Lightning
    drop the rest gives the same files but costs ~2 ms a step, as much as a whole step of the notebooks' dense nets
    (benchmarks/throughput.py). With gradient accumulation every step logs (Lightning skips the accumulating ones)."""
    if trainer.accumulate_grad_batches != 1:
        return True
    batches = trainer.fit_loop.epoch_loop.batch_progress.total.ready  # this one included
    return batches % trainer.log_every_n_steps == 0 or trainer.should_stop


class TestOutputs:
    """The test split's probabilities, targets and confusion matrix, gathered over DDP ranks at the epoch's end:
    what reports, plots and ``predictions.csv`` read (as ``model.test_outputs``)."""

    def __init__(self, num_classes: int) -> None:
        self.confusion = confusion_matrix(num_classes)
        self.chunks: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(self, probs: torch.Tensor, targets: torch.Tensor, metric_probs: torch.Tensor) -> None:
        self.confusion.update(metric_probs, targets)
        self.chunks.append((probs.cpu(), targets.cpu()))

    def compute(self, module: L.LightningModule) -> dict[str, torch.Tensor]:
        """Everything collected since the last call (and reset): ``confusion_matrix``, ``probs``, ``targets``."""
        out = {"confusion_matrix": self.confusion.compute().cpu()}
        self.confusion.reset()
        if self.chunks:
            probs, targets = (torch.cat(parts) for parts in zip(*self.chunks))
            if module.trainer is not None and module.trainer.world_size > 1:
                probs = module.all_gather(probs.to(module.device)).flatten(0, 1).cpu()
                targets = module.all_gather(targets.to(module.device)).flatten(0, 1).cpu()
            out |= {"probs": probs, "targets": targets}
        self.chunks = []
        return out
