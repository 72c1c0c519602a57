"""One LightningModule for every net and task: preprocessing, the steps and the metrics; the pieces come by name
from registries — losses (training/losses.py), optimizers and schedules (training/optim.py), mixing and
test-time augmentation (training/recipes.py) — and grouped steps live in training/grouped_steps.py.

Everything saved in the checkpoint's hyperparameters is a plain Python value (torch >= 2.6 loads
checkpoints with ``weights_only=True``), and the input spec (channels, size, mean, std) travels with it,
so evaluation and prediction preprocess exactly as training did.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from lit_vision.data.augment import to_float
from lit_vision.errors import LitVisionError
from lit_vision.models.registry import canonical_spec, create_net
from lit_vision.models.whitening import unfitted_stems
from lit_vision.training import compiled, epoch_state, grouped_steps, losses, optim, recipes
from lit_vision.training.losses import NonFiniteLossError, num_outputs_for
from lit_vision.training.metrics import (
    TestOutputs,
    classification_metrics,
    logs_written_this_step,
    metric_input,
    training_metric_input,
)


class ImageClassifier(L.LightningModule):
    """Every argument comes from the model config (``conf/model_defaults.yaml`` states the defaults, once) and
    the data (``class_names``, ``input_spec``, ``class_weights``); see
    :func:`~lit_vision.training.builders.build_classifier`."""

    def __init__(self, *, net: Mapping[str, Any], class_names: list[str], input_spec: Mapping[str, Any],
                 loss: str, optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], label_smoothing: float,
                 compile: bool, channels_last: bool, class_weights: list[float] | None = None,
                 mix: Mapping[str, Any] | None = None, tta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        check_model_config({"loss": loss, "label_smoothing": label_smoothing, "optimizer": optimizer,
                            "scheduler": scheduler, "tta": tta, "mix": mix}, class_names)
        net = canonical_spec(net)  # a registered name, never an import path (checkpoints outlive renames)
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.loss_name = loss
        self.loss_fn = losses.LOSSES[loss]
        self.net_name = str(net["name"])
        self.net = create_net(net)
        self.channels_last = bool(channels_last)
        if self.channels_last:  # NHWC convolutions: faster on CPUs (oneDNN) and tensor-core GPUs
            self.net = self.net.to(memory_format=torch.channels_last)
        self.input_size = tuple(int(s) for s in input_spec["image_size"])
        self.register_buffer("mean", torch.tensor(input_spec["mean"]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(input_spec["std"]).view(1, -1, 1, 1), persistent=False)
        weights = torch.tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weight", weights, persistent=False)
        # recipes (training/recipes.py); None/absent = off, as in checkpoints written before they existed
        self.mixer = recipes.batch_mixer(mix, self.num_classes)
        self.tta = recipes.check_tta(tta)
        self.val_metrics = classification_metrics(self.num_classes, "val/")
        self.test_metrics = classification_metrics(self.num_classes, "test/")
        self.test_collector = TestOutputs(self.num_classes)
        self.test_outputs: dict[str, torch.Tensor] = {}  # the last test's probs, targets, confusion matrix
        self.epoch_sums = epoch_state.EpochSums()  # train/loss and train/acc, and what a resumed fit continues
        self.steps_per_execution, self.micro_batch_size = 1, 0  # set_steps_per_execution
        self.direct_backward = False  # on_fit_start
        self.logged_step_loss: float | None = None  # the last train/loss_step logged (the progress bar's)
        # model.compile (training/compiled.py): the forward for evaluation and prediction, and for training the
        # forward and loss as one function (its backward compiled by AOTAutograd); the optimizer step in
        # configure_optimizers
        self._forward = torch.compile(self._net_forward) if compile else self._net_forward
        self.compiled_net_loss = torch.compile(self._net_loss) if compile else None

    # --- forward -------------------------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images → resized, normalised float (what the net saw in training)."""
        x = to_float(x)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _net_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    def _net_loss(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, logits) of a training batch: what ``model.compile`` compiles as one function."""
        logits = self._net_forward(x)
        return self.compute_loss(logits, target), logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embedding of a batch."""
        return self.net.forward_features(self.preprocess(x))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities whatever the output width."""
        return losses.probabilities(logits)

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """``model.loss`` against integer labels ``(N,)`` or soft targets ``(N, K)`` (mixup/cutmix)."""
        return self.loss_fn(logits.float(), y, num_classes=self.num_classes, class_weight=self.class_weight,
                            label_smoothing=self.hparams.label_smoothing)

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.mix``: mixup/cutmix images and soft targets; unchanged when off."""
        return (x, y) if self.mixer is None else self.mixer(to_float(x), y)

    @staticmethod
    def hard_labels(target: torch.Tensor) -> torch.Tensor:
        return target.argmax(dim=1) if target.is_floating_point() else target

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation and prediction: with ``model.tta``, the mean over flipped/translated views."""
        if not (self.tta["hflip"] or self.tta["translate"]):
            return self(x)
        views = recipes.tta_views(to_float(x), self.tta["hflip"], self.tta["translate"])
        return torch.stack([self(v).float() for v in views]).mean(dim=0)

    # --- training ------------------------------------------------------------------------------
    def set_steps_per_execution(self, steps: int, batch_size: int) -> None:
        """``steps_per_execution``: ``steps`` optimizer steps per Lightning step, on consecutive ``batch_size``
        slices of each (grouped) batch; with 1, Lightning's automatic optimisation (training/grouped_steps.py)."""
        self.steps_per_execution, self.micro_batch_size = int(steps), int(batch_size)
        self.automatic_optimization = self.steps_per_execution == 1

    def on_fit_start(self) -> None:
        self.direct_backward = grouped_steps.direct_backward(self.trainer)
        if unfitted_stems(self.net):  # build_classifier fits them; a restored checkpoint holds them fitted
            raise LitVisionError("a whitening stem (model.net.features: whiten) is fitted on the training images "
                                 "when the classifier is built: build it with lit_vision.training.builders."
                                 "build_classifier, or call builders.fit_whitening(model, datamodule) before fitting")

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.automatic_optimization:
            x, y = batch
            x, target = self.mix(x, y)
            if self.compiled_net_loss is not None:  # model.compile
                loss, logits = self.compiled_net_loss(x, target)
            else:
                logits = self(x)
                loss = self.compute_loss(logits, target)
            probs, y = self.probabilities(logits).detach(), target
        else:
            loss, logits, y = grouped_steps.training_steps(self, batch)
            probs = self.probabilities(logits)
        self._record_training(loss, probs, self.hard_labels(y))
        return loss

    def _record_training(self, loss: torch.Tensor, probs: torch.Tensor, y: torch.Tensor) -> None:
        """Add to the epoch's loss sum and count of correct predictions; on the steps the loggers write, log the step
        loss and stop on a non-finite loss.

        Nothing here reads from the device on the other steps (each read is a host sync on a GPU; see
        training/device_reads.py): the sums stay on the device, and a NaN/inf loss shows in the epoch's loss sum,
        which is read on the logging steps and at the epoch's end (:meth:`_check_finite`). ``train/acc`` is the
        epoch's count over its images, as torchmetrics' accuracy would give, without its ~60 µs of per-step Python
        (a torchmetrics update on a 2-core CPU). The epoch means are logged once per epoch, the step loss only on
        the steps the loggers write: each ``self.log`` call costs ~0.8 ms on a 2-core CPU, and Lightning's per-step
        aggregation of logged values ~1.4 ms, as much as a whole step of the notebooks' dense nets
        (benchmarks/throughput.py)."""
        correct = (training_metric_input(probs, self.num_classes) == y).sum()
        self.epoch_sums.add(loss, len(y), correct)
        if logs_written_this_step(self.trainer):
            self._check_finite()
            # not prog_bar: Lightning turns progress-bar values into Python numbers at every step (#21232), a host
            # sync per step; the bar shows the logged value instead (callbacks.StepLossInBar)
            self.log("train/loss_step", loss, on_step=True, on_epoch=False)
            self.logged_step_loss = float(loss.detach())

    def _check_finite(self) -> None:
        """Stop on a NaN/inf loss since the last check (the epoch's loss sum holds every step's loss)."""
        losses.check_finite(self.epoch_sums.loss_sum, self.epoch_sums.checked_step, self.global_step,
                            self.current_epoch)
        self.epoch_sums.checked_step = self.global_step

    def on_train_epoch_start(self) -> None:
        self.epoch_sums.start_epoch(self.device)
        self.epoch_sums.checked_step = self.global_step
        start_epoch = getattr(self.net, "start_epoch", None)  # a net with phases (timm_net: freeze_epochs)
        if start_epoch is not None:
            start_epoch(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        seen = max(self.epoch_sums.seen, 1)
        # sync_dist: under DDP the means over every rank's images (Lightning weights each rank's by batch_size)
        for key, total in (("train/loss", self.epoch_sums.loss_sum), ("train/acc", self.epoch_sums.correct)):
            self.log(key, total / seen, on_epoch=True, prog_bar=True, sync_dist=True, batch_size=seen)

    # --- exact resume (training/epoch_state.py) ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[grouped_steps.CHECKPOINT_KEY] = self.steps_per_execution  # resume checks it (checkpoints.py)
        self.epoch_sums.save(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.epoch_sums.load(checkpoint)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The first training batch of a run resumed mid-epoch continues the epoch's sums and random streams.

        Here, after the batch is fetched and before it is augmented (``on_after_batch_transfer``): what the
        uninterrupted run drew between the checkpoint and this point is only the loader's, before the epoch."""
        if self.trainer.training:
            self.epoch_sums.resume_batch(self.device, self.trainer.world_size)
        return batch

    # --- evaluation ----------------------------------------------------------------------------
    def _eval_step(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = batch
        logits = self.eval_logits(x)
        return self.compute_loss(logits, y), self.probabilities(logits).detach(), y

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, probs, y = self._eval_step(batch)
        self.val_metrics.update(metric_input(probs, self.num_classes), y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=False)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, probs, y = self._eval_step(batch)
        self.test_metrics.update(metric_input(probs, self.num_classes), y)
        self.test_collector.update(probs, y, metric_input(probs, self.num_classes))
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)

    def on_test_epoch_end(self) -> None:
        self.test_outputs = self.test_collector.compute(self)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self.eval_logits(x))

    # --- optimisation (training/optim.py) ------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = optim.create_optimizer(self, self.hparams.optimizer)
        if self.hparams.compile:  # before the schedule wraps its step (training/compiled.py)
            compiled.compile_optimizer_step(optimizer, self.hparams.scheduler)
        scheduler = optim.create_scheduler(optimizer, self.hparams.scheduler,
                                           lambda: grouped_steps.planned_optimizer_steps(self))
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}


def check_model_config(model: Mapping[str, Any], class_names: list[str] | None = None) -> None:
    """``model.*`` recipe keys, each by the component that owns it (the optimizer and the schedule dry-built, so a
    key they do not take is refused): before any data is read (``class_names`` None, or what ``data.mapping``
    fixes) and again by the constructor with the data's classes (a binary loss needs two)."""
    losses.check_loss(model.get("loss"), model.get("label_smoothing", 0.0), class_names)
    optim.check_optimizer(model.get("optimizer") or {})
    optim.check_scheduler(model.get("scheduler") or {})
    recipes.check_tta(model.get("tta"))
    recipes.batch_mixer(model.get("mix"), num_classes=2)


__all__ = ["ImageClassifier", "NonFiniteLossError", "check_model_config", "num_outputs_for"]
