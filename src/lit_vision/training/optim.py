"""Optimizers and learning-rate schedules by name (timm's ``create_optimizer_v2`` idea): one registry each.

Adding an optimizer is one entry in :data:`OPTIMIZERS` (its constructor takes the parameter groups and the
remaining ``model.optimizer`` keys); adding a schedule is one function registered with :func:`register_scheduler`
(it takes the optimizer, the planned number of optimizer steps and the remaining ``model.scheduler`` keys). The
LightningModule and the hand-written loop of ``benchmarks/throughput.py`` build their optimizers here, so both read
``model.optimizer`` the same way.

``warmup_cosine`` and ``triangle`` are factors of ``LambdaLR``, so every parameter group keeps its own learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lit_vision.checks import non_negative_number, positive_number, proportion
from lit_vision.errors import ConfigError

OPTIMIZERS: dict[str, type[Optimizer]] = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                                          "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}
#: ``model.optimizer`` keys that shape the parameter groups; the rest go to the optimizer's constructor
GROUP_KEYS = ("name", "lr", "weight_decay", "decay_norms_and_biases", "norm_bias_lr_scale", "layer_decay")

#: schedule name → ``(optimizer, planned_steps, **keys) -> scheduler``; "none" and "plateau" are handled apart
ScheduleFactory = Callable[..., LRScheduler]
SCHEDULERS: dict[str, ScheduleFactory] = {}


def register_scheduler(name: str) -> Callable[[ScheduleFactory], ScheduleFactory]:
    def wrap(fn: ScheduleFactory) -> ScheduleFactory:
        SCHEDULERS[name] = fn
        return fn
    return wrap


def scheduler_names() -> list[str]:
    return ["none", "plateau", *SCHEDULERS]


# --- optimizers ----------------------------------------------------------------------------------------------
def is_norm_bias(module: torch.nn.Module, name: str) -> bool:
    """The shift (``bias``) of a normalisation layer: what airbench trains with a much larger learning rate."""
    return name == "bias" and isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                                                  torch.nn.LayerNorm))


def layer_lr_scales(module: torch.nn.Module, layer_decay: float) -> dict[int, float]:
    """Layer-wise learning-rate decay (BEiT, timm's ``layer_decay``): the head trains at the full rate, the
    backbone's last block at ``layer_decay`` times it, the block before at ``layer_decay**2`` ... — the input side of a
    pretrained backbone moves least. Blocks are timm's coarse groups of the net's ``backbone``; ``{id(param): scale}``
    for the backbone's parameters (others: 1)."""
    from lit_vision.models.timm_net import block_groups

    backbone = next((m.backbone for m in module.modules() if hasattr(m, "backbone") and
                     hasattr(m.backbone, "group_matcher")), None)
    if backbone is None:
        raise ConfigError("model.optimizer.layer_decay needs a timm backbone (model.net.name=timm, e.g. model=vgg16 "
                          "or experiment=photo_finetune); set it to null for this net")
    groups = block_groups(backbone)
    params = dict(backbone.named_parameters())
    return {id(params[name]): layer_decay ** (len(groups) - depth) for depth, group in enumerate(groups)
            for name in group}


def parameter_groups(module: torch.nn.Module, lr: float, weight_decay: float, decay_norms_and_biases: bool = True,
                     norm_bias_lr_scale: float = 1.0, layer_decay: float | None = None) -> list[dict[str, Any]]:
    """The optimizer's parameter groups (frozen parameters left out).

    ``decay_norms_and_biases=false``: timm's split, no weight decay on 1-D parameters (norm scales and shifts,
    biases). ``norm_bias_lr_scale``: airbench's ``bias_scaler`` — norm-layer shifts train at ``lr x scale``, with
    their weight decay divided by it so that the decay each step applies stays that of the other weights.
    ``layer_decay``: :func:`layer_lr_scales`."""
    positive_number(norm_bias_lr_scale, "model.optimizer.norm_bias_lr_scale")
    layer_scales = layer_lr_scales(module, layer_decay) if layer_decay is not None else {}
    norm_biases = {id(p) for m in module.modules() for n, p in m.named_parameters(recurse=False)
                   if is_norm_bias(m, n)} if norm_bias_lr_scale != 1.0 else set()
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for p in module.parameters():
        if not p.requires_grad:
            continue
        decay = weight_decay if decay_norms_and_biases or p.ndim > 1 else 0.0
        scale = norm_bias_lr_scale if id(p) in norm_biases else 1.0
        groups.setdefault((lr * scale * layer_scales.get(id(p), 1.0), decay / scale), []).append(p)
    return [{"params": params, "lr": group_lr, "weight_decay": decay}
            for (group_lr, decay), params in groups.items()]


def check_optimizer(optimizer: Mapping[str, Any]) -> None:
    """``model.optimizer``, dry-built over one parameter: a key or value the optimizer refuses is named now (whether
    the net has the backbone ``layer_decay`` needs is known when it is built)."""
    create_optimizer(torch.nn.Linear(1, 1), {k: v for k, v in optimizer.items() if k != "layer_decay"})
    _layer_decay(optimizer)


def _layer_decay(optimizer: Mapping[str, Any]) -> float | None:
    value = optimizer.get("layer_decay")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise ConfigError(f"model.optimizer.layer_decay={value!r} must be in (0, 1] (e.g. 0.75: each backbone block "
                          "trains at 0.75 x the learning rate of the one after it), or null for none")
    return float(value)


def create_optimizer(module: torch.nn.Module, optimizer: Mapping[str, Any]) -> Optimizer:
    """The optimizer ``model.optimizer`` describes, over ``module``'s trainable parameters."""
    cfg = dict(optimizer)
    name = cfg.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"model.optimizer.name={name!r} is not one of {sorted(OPTIMIZERS)}")
    lr = positive_number(cfg.get("lr"), "model.optimizer.lr")
    weight_decay = non_negative_number(cfg.get("weight_decay", 0.0), "model.optimizer.weight_decay")
    params = parameter_groups(module, float(lr), float(weight_decay), bool(cfg.get("decay_norms_and_biases", True)),
                              float(cfg.get("norm_bias_lr_scale", 1.0)), _layer_decay(cfg))
    extra = {k: v for k, v in cfg.items() if k not in GROUP_KEYS}
    try:
        return OPTIMIZERS[name](params, **extra)
    except TypeError as e:  # a key this optimizer does not take
        raise ConfigError(f"model.optimizer: {name} does not take {sorted(extra)} ({e}); remove the key "
                          "or pick another optimizer") from e
    except ValueError as e:  # a value torch refuses (momentum=-1, betas out of range ...)
        raise ConfigError(f"model.optimizer={dict(optimizer)}: {name} refuses it ({e}); fix the value") from e


# --- schedules -----------------------------------------------------------------------------------------------
def check_scheduler(scheduler: Mapping[str, Any]) -> None:
    """``model.scheduler``, dry-built over a one-parameter optimizer: its name, keys and values."""
    create_scheduler(torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1), scheduler, lambda: 100)


def create_scheduler(optimizer: Optimizer, scheduler: Mapping[str, Any],
                     planned_steps: Callable[[], int]) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` entry for ``model.scheduler`` (None for ``name=none``). ``planned_steps`` is
    asked only by per-step schedules, which anneal over the optimizer steps the fit will take."""
    cfg = dict(scheduler)
    kind = cfg.pop("name", "none")
    monitor = cfg.pop("monitor", "val/loss")
    if kind not in scheduler_names():
        raise ConfigError(f"model.scheduler.name={kind!r} is not one of {scheduler_names()}")
    if kind == "none":
        if cfg:
            raise ConfigError(f"model.scheduler.name=none takes no other keys, got {sorted(cfg)}; remove them")
        return None
    try:
        if kind == "plateau":
            return {"scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, **cfg), "monitor": monitor}
        return {"scheduler": SCHEDULERS[kind](optimizer, planned_steps(), **cfg), "interval": "step"}
    except TypeError as e:  # a key the schedule does not take
        raise ConfigError(f"model.scheduler: {kind} does not take one of {sorted(cfg)} ({e}); remove the key or "
                          "pick another schedule") from e
    except ValueError as e:  # a value it refuses
        if isinstance(e, ConfigError):
            raise
        raise ConfigError(f"model.scheduler={dict(scheduler)}: {kind} refuses it ({e}); fix the value") from e


@register_scheduler("cosine")
def cosine(optimizer: Optimizer, total_steps: int, **kwargs: Any) -> LRScheduler:
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, **kwargs)


@register_scheduler("onecycle")
def onecycle(optimizer: Optimizer, total_steps: int, **kwargs: Any) -> LRScheduler:
    """One max_lr per parameter group: each group's own lr is its peak."""
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                               total_steps=total_steps, **kwargs)


@register_scheduler("warmup_cosine")
def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_lr_fraction: float = 0.0) -> LRScheduler:
    """Linear warmup from ~0 over ``warmup_fraction`` of the steps, then cosine down to ``min_lr_fraction`` x lr
    (a factor on every parameter group's own learning rate)."""
    proportion(warmup_fraction, "model.scheduler.warmup_fraction")
    proportion(min_lr_fraction, "model.scheduler.min_lr_fraction")
    warmup = max(1, round(warmup_fraction * total_steps)) if warmup_fraction else 0
    decay_steps = max(1, total_steps - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return 1e-3 + (1.0 - 1e-3) * step / warmup
        progress = min(1.0, (step - warmup) / decay_steps)
        return min_lr_fraction + (1.0 - min_lr_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@register_scheduler("triangle")
def triangle(optimizer: Optimizer, total_steps: int, start_fraction: float = 0.2, peak_at: float = 0.23,
             end_fraction: float = 0.07) -> LRScheduler:
    """airbench's schedule: the learning rate rises linearly from ``start_fraction`` x lr to lr at ``peak_at`` of the
    steps, then falls linearly to ``end_fraction`` x lr at the last step (a factor on every group's own lr)."""
    proportion(start_fraction, "model.scheduler.start_fraction")
    proportion(peak_at, "model.scheduler.peak_at")
    proportion(end_fraction, "model.scheduler.end_fraction")
    peak = round(peak_at * total_steps)

    def factor(step: int) -> float:
        if step < peak:
            return start_fraction + (1.0 - start_fraction) * step / peak
        return 1.0 + (end_fraction - 1.0) * min(1.0, (step - peak) / max(1, total_steps - peak))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
