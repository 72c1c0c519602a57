"""torchmetrics collections with stable names: binary and multiclass differ only in the task."""

from __future__ import annotations

import lightning as L
import torch
from torchmetrics import Metric, MetricCollection
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


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    """``acc``, precision/recall/f1/auroc (multiclass: macro, plus ``*_weighted``), for validation, test and the
    scoring of non-Lightning models (``train/acc`` is a count kept by the classifier).

    Binary metrics take the positive-class probability, multiclass ones the probability matrix. Updates keep each
    batch on the device (:class:`OnDevice`) and the real updates, input checks included, run once at the epoch's
    end: torchmetrics' updates read from the device (a host sync per step on a GPU).
    """
    if num_classes == 2:
        metrics = {"acc": BinaryAccuracy(), "precision": BinaryPrecision(), "recall": BinaryRecall(),
                   "f1": BinaryF1Score(), "auroc": BinaryAUROC()}
    else:
        k = num_classes
        metrics = {
            "acc": MulticlassAccuracy(k, average="micro"),
            "precision": MulticlassPrecision(k, average="macro"),
            "recall": MulticlassRecall(k, average="macro"),
            "f1": MulticlassF1Score(k, average="macro"),
            "auroc": MulticlassAUROC(k, average="macro"),
            "precision_weighted": MulticlassPrecision(k, average="weighted"),
            "recall_weighted": MulticlassRecall(k, average="weighted"),
            "f1_weighted": MulticlassF1Score(k, average="weighted"),
        }
    return MetricCollection({name: OnDevice(metric) for name, metric in metrics.items()}, prefix=prefix)


class OnDevice(Metric):
    """A torchmetrics metric whose ``update`` only keeps the batch (on its device) and whose ``compute`` runs the
    wrapped metric's update on the whole epoch at once.

    torchmetrics' updates read from the device: input checks (``torch.unique`` of the targets, whether
    probabilities lie in [0, 1]) and ``bincount`` (the macro averages), each a host sync per step on a GPU. Deferred
    to the epoch's end, they happen once. The states are lists concatenated over DDP ranks (as the AUROC's own are),
    and the metrics of one collection share them (torchmetrics' compute groups): one copy of an epoch's outputs."""

    full_state_update = False

    def __init__(self, metric: Metric) -> None:
        super().__init__()
        self.metric = metric
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.detach())
        self.target.append(target.detach())

    def compute(self) -> torch.Tensor:
        self.metric.reset()
        if len(self.preds):  # nothing to add before the first update (torchmetrics then warns and returns 0)
            self.metric.update(_cat(self.preds), _cat(self.target))
        return self.metric.compute()


def _cat(parts: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A list state as one tensor (after a DDP sync it already is one)."""
    return torch.cat(parts) if isinstance(parts, list) else parts


def confusion_matrix(num_classes: int) -> BinaryConfusionMatrix | MulticlassConfusionMatrix:
    return BinaryConfusionMatrix() if num_classes == 2 else MulticlassConfusionMatrix(num_classes)


def metric_input(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """What the metrics take: P(positive) for binary, the full (N, K) matrix otherwise."""
    return probs[:, 1] if num_classes == 2 else probs


def training_metric_input(probs: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The predicted class that ``train/acc`` counts (binary: P(positive) > 0.5, torchmetrics' own threshold)."""
    return (probs[:, 1] > 0.5).long() if num_classes == 2 else probs.argmax(dim=1)


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
