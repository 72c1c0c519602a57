"""Batched augmentation on the model's device (airbench style): no per-image Python.

Every image draws its own random parameters; the work is done on whole batches with per-image tensors of
parameters (masks, factors, affine matrices), so the cost does not grow with Python calls per image.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from lit_vision.checks import build_settings
from lit_vision.errors import ConfigError


def to_float(x: torch.Tensor) -> torch.Tensor:
    """The one uint8 → float conversion: pixels to [0, 1]; float images as they are."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


@dataclass(frozen=True)
class AugmentConfig:
    """``data.augment``: which augmentations training batches get (validated on construction)."""

    crop_padding: int = 0
    hflip: bool = False
    random_erasing: float = 0.0
    trivial_augment: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.crop_padding, bool) or not isinstance(self.crop_padding, int) or self.crop_padding < 0:
            raise ConfigError(f"data.augment.crop_padding={self.crop_padding!r} must be an integer >= 0 "
                              "(0 turns random crops off)")
        for key in ("hflip", "trivial_augment"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"data.augment.{key}={getattr(self, key)!r} must be true or false")
        p = self.random_erasing
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ConfigError(f"data.augment.random_erasing={p!r} must be a probability in [0, 1] "
                              "(0 turns random erasing off)")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AugmentConfig:
        """Build from the ``data.augment`` mapping; an unknown key is a :class:`ConfigError` naming it."""
        return build_settings(cls, values, "data.augment", "an augmentation setting")

    @property
    def enabled(self) -> bool:
        return self.crop_padding > 0 or self.hflip or self.random_erasing > 0 or self.trivial_augment


# --- float batches in [0, 1] ------------------------------------------------------------------------------
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


#: torchvision's RandomErasing defaults: the box covers this share of the image, with this height/width ratio
ERASE_SCALE = (0.02, 0.33)
ERASE_RATIO = (0.3, 3.3)
#: boxes drawn per image; the first that fits is used (torchvision retries 10 times, then erases nothing)
_ERASE_TRIES = 10


def _erase_boxes(n: int, h: int, w: int, device: torch.device,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: (box height, box width, fits) for the first of ``_ERASE_TRIES`` boxes that fits (torchvision's
    RandomErasing draw); ``fits`` is False where none did."""
    area = h * w * torch.empty(n, _ERASE_TRIES, device=device).uniform_(*ERASE_SCALE, generator=generator)
    log_lo, log_hi = math.log(ERASE_RATIO[0]), math.log(ERASE_RATIO[1])
    ratio = torch.empty(n, _ERASE_TRIES, device=device).uniform_(log_lo, log_hi, generator=generator).exp_()
    bh = (area * ratio).sqrt_().round_().long()
    bw = (area / ratio).sqrt_().round_().long()
    ok = (bh < h) & (bw < w)
    first = ok.long().argmax(dim=1, keepdim=True)  # index of the first fitting box (0 if none fits)
    return bh.gather(1, first)[:, 0], bw.gather(1, first)[:, 0], ok.any(dim=1)


def batch_random_erasing(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability ``p`` per image, set one random rectangle (all channels) to 0.

    Box sizes follow torchvision's ``RandomErasing`` defaults (2%-33% of the area, aspect ratio 0.3-3.3) and so
    does the fill, ``value=0``: here the images are still in [0, 1] (the model normalises them), so 0 is black."""
    n, _, h, w = x.shape
    bh, bw, fits = _erase_boxes(n, h, w, x.device, generator)
    top = (torch.rand(n, device=x.device, generator=generator) * (h - bh + 1)).long()
    left = (torch.rand(n, device=x.device, generator=generator) * (w - bw + 1)).long()
    rows = torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None]
    in_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])  # (n, h)
    in_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])  # (n, w)
    erase = fits & (torch.rand(n, device=x.device, generator=generator) < p)
    mask = in_rows[:, :, None] & in_cols[:, None, :] & erase[:, None, None]  # (n, h, w)
    return x.masked_fill(mask[:, None], 0.0)


def augment_batch(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """The float-batch augmentations of ``cfg`` (crop, flip, erasing); TrivialAugment runs before, on uint8."""
    if cfg.crop_padding > 0:
        x = batch_random_crop(x, cfg.crop_padding)
    if cfg.hflip:
        x = batch_hflip(x)
    if cfg.random_erasing > 0:
        x = batch_random_erasing(x, cfg.random_erasing)
    return x


# --- TrivialAugment (Wide) on uint8 batches ---------------------------------------------------------------
def _blend(x: torch.Tensor, other: torch.Tensor | float, ratio: torch.Tensor) -> torch.Tensor:
    """``ratio * x + (1 - ratio) * other`` per image, clamped and truncated to uint8 like torchvision's blend."""
    return (x * ratio + other * (1.0 - ratio)).clamp_(0, 255).to(torch.uint8)


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """Float luma (N, 1, H, W) as torchvision's colour ops compute it for uint8 images (floored ITU-R 601-2)."""
    if x.shape[1] == 1:
        return x.float()
    r, g, b = x.float().unbind(1)
    return (r * 0.2989 + g * 0.587 + b * 0.114).floor_()[:, None]


def _brightness(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return _blend(x, 0.0, 1.0 + magnitude)


def _color(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Saturation; a grayscale image has none, so it is returned as it is (as torchvision does)."""
    return x if x.shape[1] == 1 else _blend(x, _grayscale(x), 1.0 + magnitude)


def _contrast(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return _blend(x, _grayscale(x).mean(dim=(1, 2, 3), keepdim=True), 1.0 + magnitude)


def _sharpness(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Blend the interior with a rounded 3x3 smoothing (torchvision's kernel); borders, and images of 2 pixels or
    less across, stay as they are."""
    c, h, w = x.shape[1:]
    if h <= 2 or w <= 2:
        return x
    kernel = torch.ones(3, 3, device=x.device)
    kernel[1, 1] = 5.0
    kernel = (kernel / 13.0).expand(c, 1, 3, 3)
    out = x.float()
    blurred = F.conv2d(out, kernel, groups=c).round_()
    inner = out[:, :, 1:-1, 1:-1]
    inner.add_((blurred - inner) * -magnitude)  # factor 1 + magnitude: inner + (1 - factor) * (blurred - inner)
    return out.clamp_(0, 255).to(torch.uint8)


def _posterize(x: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the ``bits`` highest bits of every value."""
    mask = 256 - 2 ** (8 - bits.round().long())
    return x & mask.to(torch.uint8)


def _solarize(x: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values >= ``threshold`` (a fraction of 255)."""
    return torch.where(x >= threshold * 255.0, 255 - x, x)


def _autocontrast(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return TF.autocontrast(x)


def _equalize(x: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    return TF.equalize(x)


#: photometric ops: (uint8 batch, per-image signed magnitude (N, 1, 1, 1)) -> uint8 batch
_PHOTOMETRIC: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "brightness": _brightness, "color": _color, "contrast": _contrast, "sharpness": _sharpness,
    "posterize": _posterize, "solarize": _solarize, "autocontrast": _autocontrast, "equalize": _equalize}
#: geometric ops, done together by one grid_sample with one affine matrix per image
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
#: TrivialAugment's ops, by id; the geometric ones last, so that they form one slice of an op-sorted batch
TRIVIAL_AUGMENT_OPS: tuple[str, ...] = ("identity", *_PHOTOMETRIC, *_GEOMETRIC)
_FIRST_GEOMETRIC = TRIVIAL_AUGMENT_OPS.index(_GEOMETRIC[0])
_MAGNITUDE_BINS = 31
#: torchvision's TrivialAugmentWide space: op -> (first, last magnitude of its 31 bins, random sign?). Ops without
#: a magnitude have 0. Factors are 1 + magnitude; translations are in pixels (truncated to whole ones), rotations
#: in degrees, shears the tangent of the shear angle, posterize the bits kept, solarize the threshold / 255.
_TRIVIAL_AUGMENT_SPACE: dict[str, tuple[float, float, bool]] = {
    "identity": (0.0, 0.0, False), "brightness": (0.0, 0.99, True), "color": (0.0, 0.99, True),
    "contrast": (0.0, 0.99, True), "sharpness": (0.0, 0.99, True), "posterize": (8.0, 2.0, False),
    "solarize": (1.0, 0.0, False), "autocontrast": (0.0, 0.0, False), "equalize": (0.0, 0.0, False),
    "rotate": (0.0, 135.0, True), "shear_x": (0.0, 0.99, True), "shear_y": (0.0, 0.99, True),
    "translate_x": (0.0, 32.0, True), "translate_y": (0.0, 32.0, True)}
_MAGNITUDES = torch.stack([torch.linspace(lo, hi, _MAGNITUDE_BINS)
                           for lo, hi, _ in (_TRIVIAL_AUGMENT_SPACE[op] for op in TRIVIAL_AUGMENT_OPS)])
_MAGNITUDE_TABLE: list[list[float]] = _MAGNITUDES.tolist()
_SIGNED_OPS = [_TRIVIAL_AUGMENT_SPACE[op][2] for op in TRIVIAL_AUGMENT_OPS]


def _affine_theta(kind: torch.Tensor, magnitude: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per image, the output → input map of torchvision's ``rotate``/``affine`` for that op, as ``affine_grid``'s
    normalised (N, 2, 3) matrix. ``kind`` indexes :data:`_GEOMETRIC`.

    In pixels about the image centre (x right, y down) the map is ``[[cos, -sin + sx, sx*h/2 - tx],
    [sin + sy, cos, sy*w/2 - ty]]``: a counter-clockwise rotation, shears about the top-left corner (torchvision's
    ``center=[0, 0]``) and whole-pixel translations; each op leaves the others' terms at zero."""
    def pick(name: str, value: torch.Tensor) -> torch.Tensor:
        return torch.where(kind == _GEOMETRIC.index(name), value, torch.zeros_like(value))

    angle = pick("rotate", torch.deg2rad(magnitude))
    cos, sin = angle.cos(), angle.sin()
    sx, sy = pick("shear_x", magnitude), pick("shear_y", magnitude)
    tx, ty = pick("translate_x", magnitude.trunc()), pick("translate_y", magnitude.trunc())
    rows = [torch.stack([cos, (sx - sin) * (h / w), (sx * h / 2 - tx) * (2 / w)], dim=1),
            torch.stack([(sin + sy) * (w / h), cos, (sy * w / 2 - ty) * (2 / h)], dim=1)]
    return torch.stack(rows, dim=1)


def _geometric(x: torch.Tensor, kind: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
    """Rotate/shear/translate each image by its own matrix: nearest neighbour, zeros outside (TrivialAugment's)."""
    theta = _affine_theta(kind, magnitude, *x.shape[-2:])
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x.float(), grid, mode="nearest", padding_mode="zeros", align_corners=False).to(torch.uint8)


def apply_trivial_ops(x: torch.Tensor, ops: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Apply op ``ops[i]`` (an index into :data:`TRIVIAL_AUGMENT_OPS`) with ``magnitudes[i]`` to image ``i``.

    The batch is sorted by op and each op runs once on its slice (the geometric ones share one), so there is a
    handful of batched calls per batch. The slice sizes are read from ``ops`` here; :func:`trivial_augment` plans
    them on the host instead (nothing read back from the device)."""
    op_list = ops.tolist()
    return _apply_planned(x, op_list, magnitudes.to(x.device))


def _apply_planned(x: torch.Tensor, ops: list[int], magnitudes: torch.Tensor) -> torch.Tensor:
    """:func:`apply_trivial_ops` with the ops as Python numbers: the op-sorted order and the slice bounds are planned
    on the host and the order goes to the device with the batch's own stream (no sync)."""
    order_list = sorted(range(len(ops)), key=ops.__getitem__)  # stable, as argsort(stable=True)
    counts = [0] * len(TRIVIAL_AUGMENT_OPS)
    for op in ops:
        counts[op] += 1
    bounds = list(itertools.accumulate(counts))
    order = _to_device(torch.tensor(order_list), x.device)
    out, mags_sorted = x[order], magnitudes[order]
    kinds_sorted = [ops[i] for i in order_list]
    for op, name in enumerate(TRIVIAL_AUGMENT_OPS[1:_FIRST_GEOMETRIC], start=1):
        start, stop = bounds[op - 1], bounds[op]
        if stop > start:
            magnitude = mags_sorted[start:stop, None, None, None]
            out[start:stop] = _PHOTOMETRIC[name](out[start:stop], magnitude)
    start = bounds[_FIRST_GEOMETRIC - 1]
    if bounds[-1] > start:
        kind = _to_device(torch.tensor(kinds_sorted[start:]) - _FIRST_GEOMETRIC, x.device)
        out[start:] = _geometric(out[start:], kind, mags_sorted[start:])
    return torch.empty_like(x).index_copy_(0, order, out)


def _to_device(host: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without waiting for the device (pinned, non-blocking on CUDA)."""
    if device.type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)


def trivial_augment(x: torch.Tensor, rng: random.Random | None = None) -> torch.Tensor:
    """TrivialAugmentWide on a uint8 (N, C, H, W) batch: per image, one op drawn uniformly from
    :data:`TRIVIAL_AUGMENT_OPS` with one of its 31 magnitudes drawn uniformly (negated with probability 1/2 for
    the signed ops), as ``torchvision.transforms.v2.TrivialAugmentWide`` does for one image.

    The draws are Python numbers from ``rng`` (default: the ``random`` module, which ``seed`` seeds and a mid-epoch
    checkpoint saves): the batch is planned on the host and nothing is read back from the device."""
    if x.dtype != torch.uint8:
        raise TypeError(f"trivial_augment works on uint8 images, got {x.dtype}")
    rng = rng or random  # the module's functions draw from its shared generator
    ops = [rng.randrange(len(TRIVIAL_AUGMENT_OPS)) for _ in range(x.shape[0])]
    magnitudes = []
    for op in ops:
        magnitude = _MAGNITUDE_TABLE[op][rng.randrange(_MAGNITUDE_BINS)]
        magnitudes.append(-magnitude if _SIGNED_OPS[op] and rng.random() <= 0.5 else magnitude)
    return _apply_planned(x, ops, _to_device(torch.tensor(magnitudes), x.device))


def transfer_batch(batch: tuple[torch.Tensor, torch.Tensor], cfg: AugmentConfig,
                   training: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 batch arrived on the model's device → float in [0, 1], augmented per ``cfg`` while training
    (TrivialAugment first: its ops are defined on uint8 values). Both data modules' ``on_after_batch_transfer``."""
    x, y = batch
    augmenting = training and cfg.enabled
    if augmenting and cfg.trivial_augment:
        x = trivial_augment(x)
    x = to_float(x)
    if augmenting:
        x = augment_batch(x, cfg)
    return x, y
