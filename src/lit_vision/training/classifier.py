"""One LightningModule for every net and task: loss, optimiser, scheduler and metrics from config.

Everything saved in the checkpoint's hyperparameters is a plain Python value (torch >= 2.6 loads
checkpoints with ``weights_only=True``), and the input spec (channels, size, mean, std) travels with it,
so evaluation and prediction preprocess exactly as training did.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import SingleDeviceStrategy

from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.models.registry import canonical_spec, create_net
from lit_vision.models.whitening import PatchWhitening
from lit_vision.training import epoch_state, optim, recipes
from lit_vision.training.metrics import classification_metrics, confusion_matrix, metric_input

LOSSES = ("ce", "bce", "mse")


class NonFiniteLossError(LitVisionError, RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def num_outputs_for(num_classes: int, loss: str) -> int:
    """Binary + BCE → one logit; everything else → one logit per class."""
    return 1 if (num_classes == 2 and loss == "bce") else num_classes


class ImageClassifier(L.LightningModule):
    """Every argument comes from the model config (``conf/model_defaults.yaml`` states the defaults, once) and
    the data (``class_names``, ``input_spec``, ``class_weights``); see
    :func:`~lit_vision.training.builders.build_classifier`."""

    def __init__(self, *, net: Mapping[str, Any], class_names: list[str], input_spec: Mapping[str, Any],
                 loss: str, optimizer: Mapping[str, Any], scheduler: Mapping[str, Any], label_smoothing: float,
                 compile: bool, channels_last: bool, class_weights: list[float] | None = None,
                 mix: Mapping[str, Any] | None = None, tta: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        optimizer, scheduler = dict(optimizer), dict(scheduler)
        validate_hparams(loss, optimizer, scheduler, class_names)
        net = canonical_spec(net)  # a registered name, never an import path (checkpoints outlive renames)
        self.save_hyperparameters()
        self.class_names = list(class_names)
        self.num_classes = len(class_names)
        self.loss_name = loss
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
        self.train_metrics = classification_metrics(self.num_classes, "train/", full=False)
        self.val_metrics = classification_metrics(self.num_classes, "val/")
        self.test_metrics = classification_metrics(self.num_classes, "test/")
        self.test_confusion = confusion_matrix(self.num_classes)
        self.test_outputs: dict[str, torch.Tensor] = {}
        self._test_chunks: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._train_loss_sum = torch.zeros(())
        self._train_seen = 0
        self._resumed_state: dict[str, Any] | None = None  # epoch_state from the checkpoint, applied on resume
        self.steps_per_execution, self.micro_batch_size = 1, 0  # set_steps_per_execution
        self._direct_backward = False  # on_fit_start
        self._forward = torch.compile(self._net_forward) if compile else self._net_forward

    # --- forward -------------------------------------------------------------------------------
    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 or [0, 1] float images → resized, normalised float (what the net saw in training)."""
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        if tuple(x.shape[-2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        x = (x - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _net_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer embedding of a batch."""
        return self.net.forward_features(self.preprocess(x))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities whatever the output width."""
        logits = logits.float()
        if logits.shape[1] == 1:
            p = torch.sigmoid(logits[:, 0])
            return torch.stack([1 - p, p], dim=1)
        return logits.softmax(dim=1)

    def compute_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Loss against integer labels ``(N,)`` or soft targets ``(N, K)`` (mixup/cutmix)."""
        logits = logits.float()
        soft = y.is_floating_point()
        if self.loss_name == "ce":
            return F.cross_entropy(logits, y, weight=self.class_weight, label_smoothing=self.hparams.label_smoothing)
        if self.loss_name == "bce":
            pos_weight = None
            if self.class_weight is not None:
                pos_weight = (self.class_weight[1] / self.class_weight[0]).reshape(1)
            target = y if soft else F.one_hot(y, self.num_classes).float()
            target = target[:, 1] if logits.shape[1] == 1 else target
            return F.binary_cross_entropy_with_logits(logits.squeeze(1) if logits.shape[1] == 1 else logits,
                                                      target, pos_weight=pos_weight)
        # mse: Keras-style mean squared error between class probabilities and one-hot targets
        probs = self.probabilities(logits)
        return F.mse_loss(probs, y if soft else F.one_hot(y, self.num_classes).float())

    # --- steps ---------------------------------------------------------------------------------
    def _shared_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training: (mixed) batch → loss; evaluation: the test-time-augmented logits. Returns the loss, the
        probabilities and the integer labels the metrics take (a mixed image's dominant label)."""
        x, y = batch
        if self.training:
            x, target = self.mix(x, y)
            logits = self(x)
            return self.compute_loss(logits, target), self.probabilities(logits).detach(), self.hard_labels(target)
        logits = self.eval_logits(x)
        return self.compute_loss(logits, y), self.probabilities(logits).detach(), y

    def mix(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``model.mix``: mixup/cutmix images and soft targets; unchanged when off."""
        if self.mixer is None:
            return x, y
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return self.mixer(x, y)

    @staticmethod
    def hard_labels(target: torch.Tensor) -> torch.Tensor:
        return target.argmax(dim=1) if target.is_floating_point() else target

    def eval_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for evaluation and prediction: with ``model.tta``, the mean over flipped/translated views."""
        if not (self.tta["hflip"] or self.tta["translate"]):
            return self(x)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        views = recipes.tta_views(x, self.tta["hflip"], self.tta["translate"])
        return torch.stack([self(v).float() for v in views]).mean(dim=0)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if not self.automatic_optimization:
            return self._training_steps(batch, batch_idx)
        loss, probs, y = self._shared_step(batch)
        self._record_training(loss, probs, y, batch_idx)
        return loss

    def set_steps_per_execution(self, steps: int, batch_size: int) -> None:
        """Take ``steps`` optimizer steps per Lightning step, on consecutive ``batch_size`` slices of each batch
        (``steps_per_execution``; the data module serves them grouped). Lightning's fixed cost per step (~1 ms on
        a 2-core CPU) is then paid once per group; with 1, Lightning's automatic optimisation does the step."""
        self.steps_per_execution = int(steps)
        self.micro_batch_size = int(batch_size)
        self.automatic_optimization = self.steps_per_execution == 1

    def _training_steps(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """One optimizer step per ``micro_batch_size`` slice: forward, backward, step, and a per-step scheduler's
        step; metrics and the loss recorded once for the group."""
        x, y = batch
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()  # None, or a per-step one (config validation refuses plateau)
        # normalised once for the group; a compiled forward keeps its own (compiled) preprocessing
        x, forward = (x, self._forward) if self.hparams.compile else (self.preprocess(x), self.net)
        losses, logits, hard = [], [], []
        for xs, ys in zip(x.split(self.micro_batch_size), y.split(self.micro_batch_size)):
            xs, ys = self.mix(xs, ys)
            out = forward(xs)
            loss = self.compute_loss(out, ys)
            hard.append(self.hard_labels(ys))
            optimizer.zero_grad(set_to_none=True)
            self._backward(loss)
            optimizer.step()
            # autocast keeps its low-precision copies of the weights until its region ends, and the region spans
            # the whole group: without this, the next step would multiply with the weights before this update
            torch.clear_autocast_cache()
            if scheduler is not None:
                scheduler.step()
            losses.append(loss.detach() * len(ys))
            logits.append(out.detach())
        loss = torch.stack(losses).sum() / len(y)
        self._record_training(loss, self.probabilities(torch.cat(logits)), torch.cat(hard), batch_idx)
        return loss

    def _backward(self, loss: torch.Tensor) -> None:
        """``loss.backward()`` where Lightning's backward would add nothing but its hooks (one device, no loss
        scaling): they cost ~0.1 ms a step, a tenth of a notebook dense net's step on a 2-core CPU. Under DDP or
        fp16 loss scaling, Lightning's ``manual_backward`` does it."""
        if self._direct_backward:
            loss.backward()
        else:
            self.manual_backward(loss)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["steps_per_execution"] = self.steps_per_execution  # resume checks it (checkpoints.py)
        checkpoint[epoch_state.CHECKPOINT_KEY] = epoch_state.capture(self._train_loss_sum, self._train_seen,
                                                                     self.train_metrics)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # kept until training resumes (validate/test with a checkpoint load it too, and must not apply it)
        self._resumed_state = checkpoint.get(epoch_state.CHECKPOINT_KEY)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The first training batch of a run resumed mid-epoch continues the epoch's sums and random streams.

        Here, after the batch is fetched and before it is augmented (``on_after_batch_transfer``): what the
        uninterrupted run drew between the checkpoint and this point is only the loader's, before the epoch."""
        if self._resumed_state is not None and self.trainer.training:
            state, self._resumed_state = self._resumed_state, None
            if self.trainer.world_size == 1:
                self._train_loss_sum = state["loss_sum"].to(self.device)
                self._train_seen = int(state["seen"])
                epoch_state.load_metric_states(self.train_metrics, state["metrics"], self.device)
            epoch_state.set_rng_states(state["rng"])
        return batch

    def on_fit_start(self) -> None:
        strategy = self.trainer.strategy
        self._direct_backward = (isinstance(strategy, SingleDeviceStrategy)
                                 and getattr(strategy.precision_plugin, "scaler", None) is None)
        self._fit_whitening()

    def _fit_whitening(self, max_images: int = 5000) -> None:
        """Fit any whitening stem (models/whitening.py) not yet fitted, on a sample of the training split as the
        net sees it (normalised); a restored checkpoint's stem is kept. Every rank draws the same seeded sample."""
        stems = [m for m in self.net.modules() if isinstance(m, PatchWhitening) and not bool(m.fitted)]
        if not stems:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "train_sample"):
            raise LitVisionError("a whitening stem (model.net.features: whiten) is fitted on the training images at "
                                 "the start of training; pass a lit_vision VisionDataModule to trainer.fit")
        images = self.preprocess(datamodule.train_sample(max_images).to(self.device)).contiguous()
        for stem in stems:
            stem.fit(images)

    def _record_training(self, loss: torch.Tensor, probs: torch.Tensor, y: torch.Tensor, batch_idx: int) -> None:
        """Stop on a non-finite loss, update the train metrics, add to the epoch's loss sum, log the step loss."""
        # reading the loss on the host is free on a CPU but a sync on a GPU: there, only on the steps Lightning logs
        check = self.device.type == "cpu" or batch_idx % self.trainer.log_every_n_steps == 0
        if check and not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"loss became {loss.item()} at global step {self.global_step} (epoch {self.current_epoch}, "
                f"batch {batch_idx}). Training stopped; the last good checkpoint is kept in checkpoints/last.ckpt. "
                "Fix: lower model.optimizer.lr, add gradient clipping (trainer.gradient_clip_val=1.0) "
                "or use precision=32.")
        self.train_metrics.update(metric_input(probs, self.num_classes), y)
        # the epoch mean is summed on the device and logged once per epoch, the step loss only on the steps the
        # loggers write: each self.log call costs ~0.8 ms, and Lightning's per-step aggregation of logged values
        # ~1.4 ms — as much as a whole step of the notebooks' dense nets (benchmarks/throughput.py)
        self._train_loss_sum += loss.detach() * len(y)
        self._train_seen += len(y)
        if self._writes_logs():
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)

    def _writes_logs(self) -> bool:
        """Will the loggers write this step (every ``trainer.log_every_n_steps``)?"""
        connector = getattr(self.trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def on_train_epoch_start(self) -> None:
        self._train_loss_sum = torch.zeros((), device=self.device)
        self._train_seen = 0
        if self._resumed_state is not None:  # resumed from an epoch's end: a new epoch, the same random streams
            epoch_state.set_rng_states(self._resumed_state["rng"])
            self._resumed_state = None

    def on_train_epoch_end(self) -> None:
        seen = max(self._train_seen, 1)
        self.log("train/loss", self._train_loss_sum / seen, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=seen)
        # the metric objects themselves: Lightning computes (and syncs over DDP ranks) and resets them at epoch end,
        # on every rank at the same point; computing them here would start a collective rank 0 may not be in
        self.log_dict(self.train_metrics, on_epoch=True, prog_bar=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, probs, y = self._shared_step(batch)
        self.val_metrics.update(metric_input(probs, self.num_classes), y)
        self.log("val/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(y), sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True, prog_bar=False)

    def on_test_epoch_start(self) -> None:
        self._test_chunks = []

    def test_step(self, batch: Any, batch_idx: int) -> None:
        loss, probs, y = self._shared_step(batch)
        self.test_metrics.update(metric_input(probs, self.num_classes), y)
        self.test_confusion.update(metric_input(probs, self.num_classes), y)
        self.log("test/loss", loss, on_epoch=True, batch_size=len(y), sync_dist=True)
        self.log_dict(self.test_metrics, on_epoch=True)
        self._test_chunks.append((probs.cpu(), y.cpu()))

    def on_test_epoch_end(self) -> None:
        self.test_outputs = {"confusion_matrix": self.test_confusion.compute().cpu()}
        self.test_confusion.reset()
        if self._test_chunks:
            probs = torch.cat([p for p, _ in self._test_chunks])
            targets = torch.cat([t for _, t in self._test_chunks])
            if self.trainer is not None and self.trainer.world_size > 1:
                probs = self.all_gather(probs.to(self.device)).flatten(0, 1).cpu()
                targets = self.all_gather(targets.to(self.device)).flatten(0, 1).cpu()
            self.test_outputs |= {"probs": probs, "targets": targets}
        self._test_chunks = []

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> torch.Tensor:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.probabilities(self.eval_logits(x))

    # --- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = optim.create_optimizer(self, self.hparams.optimizer)
        scheduler = optim.create_scheduler(optimizer, self.hparams.scheduler, self.planned_optimizer_steps)
        return optimizer if scheduler is None else {"optimizer": optimizer, "lr_scheduler": scheduler}

    def planned_optimizer_steps(self) -> int:
        """Optimizer steps this fit will take: what a per-step scheduler anneals over."""
        trainer = self.trainer
        planned = trainer.estimated_stepping_batches
        if not self.automatic_optimization:  # Lightning counts groups of steps_per_execution batches
            per_epoch = trainer.num_training_batches * self.steps_per_execution
            dm = trainer.datamodule
            if getattr(dm, "train_set", None) is not None:  # the last group of an epoch may be short
                images = math.ceil(len(dm.train_set.labels) / trainer.world_size)
                per_epoch = min(per_epoch, math.ceil(images / self.micro_batch_size))
            planned = per_epoch * trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else math.inf
            if trainer.max_steps and trainer.max_steps > 0:
                planned = min(planned, trainer.max_steps)
        if math.isinf(planned):
            raise ConfigError("a per-step scheduler (cosine, onecycle) needs a planned length: set trainer.max_epochs "
                              "or trainer.max_steps")
        return max(1, int(planned))


def validate_hparams(loss: str, optimizer: Mapping[str, Any], scheduler: Mapping[str, Any],
                     class_names: list[str]) -> None:
    if loss not in LOSSES:
        raise ConfigError(f"model.loss={loss!r} is not one of {list(LOSSES)}")
    if loss == "bce" and len(class_names) != 2:
        raise ConfigError(f"model.loss=bce needs a binary task but the data has {len(class_names)} classes "
                          f"{class_names}; use model.loss=ce or map the labels to two classes")
    optim.check_optimizer(optimizer)
    if scheduler.get("name") not in optim.scheduler_names():
        raise ConfigError(f"model.scheduler.name={scheduler.get('name')!r} is not one of {optim.scheduler_names()}")
