"""Training-recipe pieces beyond the notebooks (timm / airbench toolbox), each switched by one config key:
mixup/cutmix on batches, test-time augmentation, warmup + cosine, weight decay off for norms and biases.

Library implementations where they exist: torchvision.transforms.v2 ``MixUp``/``CutMix``, timm's
``param_groups_weight_decay``, torch's ``LinearLR``/``CosineAnnealingLR``/``SequentialLR``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from lit_vision.checks import non_negative_number, proportion
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
def parameter_groups(module: torch.nn.Module, weight_decay: float, decay_norms_and_biases: bool) -> Any:
    """All parameters in one group, or (``decay_norms_and_biases=false``) timm's split: no weight decay on
    1-D parameters (norm scales and shifts, biases)."""
    if decay_norms_and_biases or not weight_decay:
        return module.parameters()
    from timm.optim import param_groups_weight_decay

    return param_groups_weight_decay(module, weight_decay=weight_decay)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_fraction: float = 0.05,
                  min_lr_fraction: float = 0.0) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warmup from ~0 over ``warmup_fraction`` of the steps, then cosine down to ``min_lr_fraction`` x lr."""
    proportion(warmup_fraction, "model.scheduler.warmup_fraction")
    proportion(min_lr_fraction, "model.scheduler.min_lr_fraction")
    warmup = max(1, round(warmup_fraction * total_steps)) if warmup_fraction else 0
    base_lr = optimizer.param_groups[0]["lr"]
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total_steps - warmup),
                                                        eta_min=min_lr_fraction * base_lr)
    if not warmup:
        return cosine
    ramp = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1e-3, end_factor=1.0, total_iters=warmup)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [ramp, cosine], milestones=[warmup])
