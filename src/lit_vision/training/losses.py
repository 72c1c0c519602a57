"""Losses by name (``model.loss``): one registry, like :mod:`lit_vision.training.optim`'s.

A loss is a function ``(logits, target, *, num_classes, class_weight, label_smoothing) -> loss``: ``logits`` float
``(N, outputs)``, ``target`` integer labels ``(N,)`` or soft targets ``(N, K)`` (mixup/cutmix), ``class_weight``
None or ``(K,)`` (``data.class_weighting``). Adding one is a function here registered with :func:`register_loss`;
``model.loss=<name>`` then picks it. ``binary=True`` marks a loss for two-class tasks only, whose net has a single
logit (the positive class's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lit_vision.checks import proportion
from lit_vision.errors import ConfigError, LitVisionError

LossFn = Callable[..., torch.Tensor]
LOSSES: dict[str, LossFn] = {}
BINARY_LOSSES: set[str] = set()  # two classes only, one logit
SMOOTHED_LOSSES: set[str] = set()  # the ones that apply model.label_smoothing


def register_loss(name: str, binary: bool = False, smoothing: bool = False) -> Callable[[LossFn], LossFn]:
    def wrap(fn: LossFn) -> LossFn:
        LOSSES[name] = fn
        if binary:
            BINARY_LOSSES.add(name)
        if smoothing:
            SMOOTHED_LOSSES.add(name)
        return fn
    return wrap


def loss_names() -> list[str]:
    return list(LOSSES)


def check_loss(loss: str, label_smoothing: float = 0.0, class_names: list[str] | None = None) -> None:
    """``model.loss`` and ``model.label_smoothing``; with the data's ``class_names``, that a binary loss has two."""
    if loss not in LOSSES:
        raise ConfigError(f"model.loss={loss!r} is not one of {loss_names()}")
    if proportion(label_smoothing, "model.label_smoothing") and loss not in SMOOTHED_LOSSES:
        raise ConfigError(f"model.label_smoothing={label_smoothing} is not applied by model.loss={loss} (only by "
                          f"{sorted(SMOOTHED_LOSSES)}); set model.label_smoothing=0 or use one of those losses")
    if class_names is not None and loss in BINARY_LOSSES and len(class_names) != 2:
        raise ConfigError(f"model.loss={loss} needs a binary task but the data has {len(class_names)} classes "
                          f"{class_names}; use model.loss=ce or map the labels to two classes")


class NonFiniteLossError(LitVisionError, RuntimeError):
    """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def check_finite(loss_sum: torch.Tensor, since_step: int, step: int, epoch: int) -> None:
    """Stop training when the epoch's loss sum is NaN/inf: some step's loss after global step ``since_step`` (the
    last check) and up to ``step`` was. Reading it is a host sync on a GPU: the classifier checks on the steps the
    loggers write and at each epoch's end, not at every step."""
    if not torch.isfinite(loss_sum):
        raise NonFiniteLossError(
            f"loss became {loss_sum.item()} between global steps {since_step} and {step} (epoch {epoch}). Training "
            "stopped; the last good checkpoint is kept in checkpoints/last.ckpt. Fix: lower model.optimizer.lr, add "
            "gradient clipping (trainer.gradient_clip_val=1.0) or use precision=32.")


def num_outputs_for(num_classes: int, loss: str) -> int:
    """Binary task + a binary loss (bce) → one logit; everything else → one logit per class."""
    return 1 if (num_classes == 2 and loss in BINARY_LOSSES) else num_classes


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """(N, K) class probabilities whatever the output width (one logit: sigmoid of the positive class)."""
    logits = logits.float()
    if logits.shape[1] == 1:
        p = torch.sigmoid(logits[:, 0])
        return torch.stack([1 - p, p], dim=1)
    return logits.softmax(dim=1)


def one_hot(target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Soft targets as they are; integer labels as float one-hot rows (a scatter: ``F.one_hot`` checks the labels'
    range on the host, a sync per step on a GPU)."""
    if target.is_floating_point():
        return target
    rows = torch.zeros(len(target), num_classes, device=target.device)
    return rows.scatter_(1, target.view(-1, 1), 1.0)


@register_loss("ce", smoothing=True)
def cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, class_weight: torch.Tensor | None = None,
                  label_smoothing: float = 0.0, **_: Any) -> torch.Tensor:
    return F.cross_entropy(logits, target, weight=class_weight, label_smoothing=label_smoothing)


@register_loss("bce", binary=True)
def binary_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, num_classes: int,
                         class_weight: torch.Tensor | None = None, **_: Any) -> torch.Tensor:
    """Per-class sigmoid; with one logit, against the positive class, weighted by the classes' weight ratio."""
    pos_weight = None if class_weight is None else (class_weight[1] / class_weight[0]).reshape(1)
    target = one_hot(target, num_classes)
    if logits.shape[1] == 1:
        logits, target = logits.squeeze(1), target[:, 1]
    return F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)


@register_loss("mse")
def mean_squared_error(logits: torch.Tensor, target: torch.Tensor, *, num_classes: int, **_: Any) -> torch.Tensor:
    """Keras-style mean squared error between class probabilities and one-hot targets."""
    return F.mse_loss(probabilities(logits), one_hot(target, num_classes))


__all__ = ["LOSSES", "NonFiniteLossError", "check_finite", "check_loss", "loss_names", "num_outputs_for",
           "probabilities", "register_loss"]
