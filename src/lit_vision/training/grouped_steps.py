"""``steps_per_execution``: several optimizer steps per Lightning step.

Lightning's fixed cost per training step (~1 ms on a 2-core CPU) is as much as a whole step of the notebooks' dense
nets. With ``steps_per_execution=k`` the data module serves k consecutive batches as one
(``VisionDataModule.group_train_batches``) and the classifier, in Lightning's manual optimisation, takes one
optimizer step per ``micro_batch_size`` slice (:func:`training_steps`): the same images, in the same order, as k
separate steps. With k = 1, Lightning's automatic optimisation does the step.

What else knows about it: ``config.py`` refuses the settings grouped steps cannot honour (plateau, gradient clipping,
gradient accumulation, weight averaging, checkpoints between groups); the checkpoint records the mode
(:data:`CHECKPOINT_KEY`) and :func:`check_checkpoint_mode` refuses to resume across modes.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import SingleDeviceStrategy

from lit_vision.data.epoch_order import batch_sizes
from lit_vision.errors import ConfigError

#: the checkpoint key of the ``steps_per_execution`` a checkpoint was written with (absent: 1)
CHECKPOINT_KEY = "steps_per_execution"


def direct_backward(trainer: L.Trainer) -> bool:
    """Can ``loss.backward()`` replace Lightning's ``manual_backward``? Its hooks add nothing on one device without
    loss scaling, and cost ~0.1 ms a step, a tenth of a notebook dense net's step on a 2-core CPU. Under DDP or fp16
    loss scaling, ``manual_backward`` is needed."""
    strategy = trainer.strategy
    return isinstance(strategy, SingleDeviceStrategy) and getattr(strategy.precision_plugin, "scaler", None) is None


def training_steps(module: Any, batch: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimizer step per ``module.micro_batch_size`` slice of the grouped batch: forward, backward, step, and a
    per-step scheduler's step. Returns the group's mean loss, its logits and the labels the metrics take."""
    x, y = batch
    optimizer = module.optimizers()
    scheduler = module.lr_schedulers()  # None, or a per-step one (config validation refuses plateau)
    # eager: normalised once for the group; compiled (model.compile): preprocessing, net and loss are one compiled
    # function (training/compiled.py)
    compiled = module.compiled_net_loss
    x = x if compiled is not None else module.preprocess(x)
    losses, logits, hard = [], [], []
    sizes = batch_sizes(len(y), module.micro_batch_size)  # a last image of its own joins the step before
    for xs, ys in zip(x.split(sizes), y.split(sizes)):
        xs, ys = module.mix(xs, ys)
        if compiled is not None:
            loss, out = compiled(xs, ys)
        else:
            out = module.net(xs)
            loss = module.compute_loss(out, ys)
        hard.append(module.hard_labels(ys))
        optimizer.zero_grad(set_to_none=True)
        if module.direct_backward:
            loss.backward()
        else:
            module.manual_backward(loss)
        optimizer.step()
        # autocast keeps its low-precision copies of the weights until its region ends, and the region spans the
        # whole group: without this, the next step would multiply with the weights before this update
        torch.clear_autocast_cache()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach() * len(ys))
        logits.append(out.detach())
    return torch.stack(losses).sum() / len(y), torch.cat(logits), torch.cat(hard)


def planned_steps(trainer: L.Trainer, steps_per_execution: int, micro_batch_size: int) -> float:
    """Optimizer steps a grouped fit will take (Lightning counts groups of ``steps_per_execution`` batches, and the
    last group of an epoch may be short); ``math.inf`` without ``max_epochs`` or ``max_steps``."""
    per_epoch = trainer.num_training_batches * steps_per_execution
    train_set = getattr(trainer.datamodule, "train_set", None)
    if train_set is not None:
        images = math.ceil(len(train_set.labels) / trainer.world_size)
        per_epoch = min(per_epoch, len(batch_sizes(images, micro_batch_size)))
    planned = per_epoch * trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else math.inf
    if trainer.max_steps and trainer.max_steps > 0:
        planned = min(planned, trainer.max_steps)
    return planned


def planned_optimizer_steps(module: L.LightningModule) -> int:
    """Optimizer steps the module's fit will take, in either optimisation mode: what a per-step schedule anneals
    over."""
    trainer = module.trainer
    planned = trainer.estimated_stepping_batches if module.automatic_optimization else \
        planned_steps(trainer, module.steps_per_execution, module.micro_batch_size)
    if math.isinf(planned):
        raise ConfigError("a per-step scheduler (cosine, onecycle) needs a planned length: set trainer.max_epochs "
                          "or trainer.max_steps")
    return max(1, int(planned))


def check_checkpoint_mode(path: str, ckpt: dict[str, Any], model: torch.nn.Module) -> str | None:
    """Why the checkpoint cannot resume with this model's ``steps_per_execution`` (None: it can). Lightning counts
    the steps of its two optimisation modes apart, so the step count would restart."""
    saved = int(ckpt.get(CHECKPOINT_KEY, 1))
    wanted = int(getattr(model, "steps_per_execution", 1))
    if (saved == 1) == (wanted == 1):
        return None
    return (f"checkpoint {path} was written with steps_per_execution={saved} and this run asks for {wanted}: "
            f"Lightning counts the steps of the two modes apart, so the step count would restart. Resume with "
            f"steps_per_execution={saved}" + (" (or any value above 1)" if saved > 1 else ""))


__all__ = ["CHECKPOINT_KEY", "check_checkpoint_mode", "direct_backward", "planned_steps", "training_steps"]
