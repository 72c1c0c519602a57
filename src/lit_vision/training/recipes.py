"""Training-recipe pieces beyond the notebooks (timm / airbench toolbox), each switched by one config key:
mixup/cutmix on batches and test-time augmentation (optimizers and schedules: :mod:`lit_vision.training.optim`).

Library implementations where they exist: torchvision.transforms.v2 ``MixUp``/``CutMix``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from lit_vision.checks import non_negative_number
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
def check_tta(tta: Mapping[str, Any] | None, key: str = "model.tta") -> dict[str, Any]:
    """``model.tta`` (or evaluate's ``tta``: ``key`` names it in messages) as ``{"hflip": bool, "translate": int}``."""
    tta = dict(tta or {})
    unknown = sorted(set(tta) - TTA_KEYS)
    if unknown:
        raise ConfigError(f"{key} has unknown key(s) {unknown}; allowed: {sorted(TTA_KEYS)}")
    hflip = tta.get("hflip", False)
    if hflip not in (True, False):
        raise ConfigError(f"{key}.hflip={hflip!r}: use true or false")
    translate = tta.get("translate", 0)
    if isinstance(translate, bool) or not isinstance(translate, int) or translate < 0:
        raise ConfigError(f"{key}.translate={translate!r}: use a number of pixels >= 0 (0 = off)")
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
