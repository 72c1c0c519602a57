"""Batched augmentation on the model's device (airbench style): no per-image Python."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int = 0
    hflip: bool = False

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip


def batch_hflip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def batch_random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Reflect-pad by ``padding`` and take one random HxW window per image, in one gather."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (n, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (n, h, w, c)
    return out.permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    if cfg.crop_padding > 0:
        x = batch_random_crop(x, cfg.crop_padding)
    if cfg.hflip:
        x = batch_hflip(x)
    return x
