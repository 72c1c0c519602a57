"""Training-recipe pieces beyond the notebooks (timm / airbench toolbox), each switched by one config key:
mixup/cutmix on batches and test-time augmentation (optimizers and schedules: :mod:`lit_vision.training.optim`).

MixUp/CutMix follow torchvision.transforms.v2's, with their random parameters drawn as Python numbers (no tensor
read in a training step).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from lit_vision.checks import non_negative_number
from lit_vision.errors import ConfigError
from lit_vision.training.losses import one_hot

MIX_KEYS = {"mixup_alpha", "cutmix_alpha"}
TTA_KEYS = {"hflip", "translate"}


# --- mixup / cutmix ------------------------------------------------------------------------------------------
class BatchMixer:
    """MixUp (Zhang et al. 2018) and CutMix (Yun et al. 2019) on a batch, as torchvision.transforms.v2's ``MixUp``
    and ``CutMix`` do it — each image mixed with its neighbour in the batch (``roll(1, 0)``), one ``lam ~ Beta(alpha,
    alpha)`` per batch, CutMix's box centred uniformly and cut to the image, ``lam`` then the kept area — with the
    random parameters drawn as Python numbers (the ``random`` module, seeded by ``seed``/``seed_everything``).
    torchvision draws them as host tensors and reads them back, and one-hot encodes the labels with ``F.one_hot``,
    which reads their range on a CPU: here a training step reads nothing from the device
    (training/device_reads.py). One of the two per batch, at random, when both are on."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int) -> None:
        self.alphas = [(kind, alpha) for kind, alpha in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if alpha]
        self.num_classes = int(num_classes)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        kind, alpha = random.choice(self.alphas) if len(self.alphas) > 1 else self.alphas[0]
        lam = random.betavariate(alpha, alpha)
        if kind == "mixup":
            mixed = x.roll(1, 0).mul_(1.0 - lam).add_(x.mul(lam))
        else:
            mixed, lam = self._paste_box(x, lam)
        target = one_hot(y, self.num_classes)
        return mixed, target.roll(1, 0).mul_(1.0 - lam).add_(target.mul(lam))

    @staticmethod
    def _paste_box(x: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        h, w = x.shape[-2:]
        centre_x, centre_y = random.randrange(w), random.randrange(h)
        half_w, half_h = int(0.5 * math.sqrt(1.0 - lam) * w), int(0.5 * math.sqrt(1.0 - lam) * h)
        x1, y1 = max(centre_x - half_w, 0), max(centre_y - half_h, 0)
        x2, y2 = min(centre_x + half_w, w), min(centre_y + half_h, h)
        out = x.clone()
        out[..., y1:y2, x1:x2] = x.roll(1, 0)[..., y1:y2, x1:x2]
        return out, 1.0 - (x2 - x1) * (y2 - y1) / (w * h)


def batch_mixer(mix: Mapping[str, Any] | None, num_classes: int) -> BatchMixer | None:
    """``model.mix``: mixup (``mixup_alpha`` > 0) and/or cutmix (``cutmix_alpha`` > 0) on each training batch —
    one of them per batch, chosen at random when both are on. Returns ``(images, labels) -> (images, soft targets)``
    or None when both are off."""
    mix = dict(mix or {})
    unknown = sorted(set(mix) - MIX_KEYS)
    if unknown:
        raise ConfigError(f"model.mix has unknown key(s) {unknown}; allowed: {sorted(MIX_KEYS)}")
    mixup = non_negative_number(mix.get("mixup_alpha", 0.0), "model.mix.mixup_alpha")
    cutmix = non_negative_number(mix.get("cutmix_alpha", 0.0), "model.mix.cutmix_alpha")
    return BatchMixer(mixup, cutmix, num_classes) if (mixup or cutmix) else None


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
