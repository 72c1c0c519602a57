"""Training-recipe pieces beyond the notebooks (timm / airbench toolbox), each switched by one config key:
mixup/cutmix on batches, test-time augmentation, warmup + cosine and airbench's triangle schedule (as factors of
``LambdaLR``, so that every parameter group keeps its own learning rate), weight decay off for norms and biases,
a larger learning rate for norm-layer shifts.

Library implementations where they exist: torchvision.transforms.v2 ``MixUp``/``CutMix``, torch's ``LambdaLR``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from lit_vision.checks import non_negative_number, positive_number, proportion
from lit_vision.errors import ConfigError

MIX_KEYS = {"mixup_alpha", "cutmix_alpha"}
TTA_KEYS = {"hflip", "translate"}


# --- mixup / cutmix ------------------------------------------------------------------------------------------
def batch_mixer(mix: Mapping[str, Any] | None, num_classes: int) -> Callable | None:
    """``model.mix``: mixup (``mixup_alpha`` > 0) and/or cutmix (``cutmix_alpha`` > 0) on each training batch —
    one of them per batch, chosen at random when both are on. Returns ``(images, labels) -> (images, soft targets)``
    or None when both are off."""
    mix = dict(mix or {})
    unknown = sorted(set(mix) - MIX_KEYS)
    if unknown:
        raise ConfigError(f"model.mix has unknown key(s) {unknown}; allowed: {sorted(MIX_KEYS)}")
    mixup = non_negative_number(mix.get("mixup_alpha", 0.0), "model.mix.mixup_alpha")
    cutmix = non_negative_number(mix.get("cutmix_alpha", 0.0), "model.mix.cutmix_alpha")
    ops = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup else []) + \
          ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix else [])
    if not ops:
        return None
    return ops[0] if len(ops) == 1 else v2.RandomChoice(ops)


# --- test-time augmentation ----------------------------------------------------------------------------------
def check_tta(tta: Mapping[str, Any] | None) -> dict[str, Any]:
    tta = dict(tta or {})
    unknown = sorted(set(tta) - TTA_KEYS)
    if unknown:
        raise ConfigError(f"model.tta has unknown key(s) {unknown}; allowed: {sorted(TTA_KEYS)}")
    hflip = tta.get("hflip", False)
    if hflip not in (True, False):
        raise ConfigError(f"model.tta.hflip={hflip!r}: use true or false")
    translate = tta.get("translate", 0)
    if not isinstance(translate, int) or translate < 0:
        raise ConfigError(f"model.tta.translate={translate!r}: use a number of pixels >= 0 (0 = off)")
    return {"hflip": bool(hflip), "translate": int(translate)}


def shift(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Translate a batch by (dy, dx) pixels, filling with reflected border pixels (sizes unchanged)."""
    pad = max(abs(dy), abs(dx))
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    h, w = x.shape[-2:]
    return padded[..., pad - dy:pad - dy + h, pad - dx:pad - dx + w]


def tta_views(x: torch.Tensor, hflip: bool, translate: int) -> list[torch.Tensor]:
    """The batch itself, shifted by ±``translate`` pixels (diagonally, as airbench), and the mirror image of each."""
    views = [x]
    if translate:
        views += [shift(x, translate, translate), shift(x, -translate, -translate)]
    if hflip:
        views += [v.flip(-1) for v in views]
    return views


# --- optimisation --------------------------------------------------------------------------------------------
def is_norm_bias(module: torch.nn.Module, name: str) -> bool:
    """The shift (``bias``) of a normalisation layer: what airbench trains with a much larger learning rate."""
    return name == "bias" and isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm,
                                                  torch.nn.LayerNorm))


def parameter_groups(module: torch.nn.Module, lr: float, weight_decay: float, decay_norms_and_biases: bool = True,
                     norm_bias_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """The optimizer's parameter groups (frozen parameters left out).

    ``decay_norms_and_biases=false``: timm's split, no weight decay on 1-D parameters (norm scales and shifts,
    biases). ``norm_bias_lr_scale``: airbench's ``bias_scaler`` — norm-layer shifts train at ``lr x scale``, with
    their weight decay divided by it so that the decay each step applies stays that of the other weights."""
    positive_number(norm_bias_lr_scale, "model.optimizer.norm_bias_lr_scale")
    norm_biases = {id(p) for m in module.modules() for n, p in m.named_parameters(recurse=False)
                   if is_norm_bias(m, n)} if norm_bias_lr_scale != 1.0 else set()
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for p in module.parameters():
        if not p.requires_grad:
            continue
        decay = weight_decay if decay_norms_and_biases or p.ndim > 1 else 0.0
        scale = norm_bias_lr_scale if id(p) in norm_biases else 1.0
        groups.setdefault((lr * scale, decay / scale), []).append(p)
    return [{"params": params, "lr": group_lr, "weight_decay": decay}
            for (group_lr, decay), params in groups.items()]


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_lr_fraction: float = 0.0) -> torch.optim.lr_scheduler.LRScheduler:
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


def triangle(optimizer: torch.optim.Optimizer, total_steps: int, start_fraction: float = 0.2,
             peak_at: float = 0.23, end_fraction: float = 0.07) -> torch.optim.lr_scheduler.LRScheduler:
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
