"""Unusable images: blank, too dark or bright, blurry, grayscale inside a colour set, tiny or extremely elongated.

:func:`image_stats` measures uint8 image arrays ``(N, C, H, W)`` a chunk at a time, :func:`file_stats` reads the
original sizes of image files from their headers, and :func:`quality_issues` turns both into findings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lit_vision.auditing.hashing import check_images, chunk_slices, luma
from lit_vision.checks import build_settings, non_negative_int, non_negative_number, positive_number, proportion
from lit_vision.errors import ConfigError
from lit_vision.imaging import open_image

#: an RGB image whose channels differ by at most this much at every pixel is a grayscale image (JPEG chroma noise)
GRAYSCALE_TOLERANCE = 2
#: the kinds of finding, in the order they are listed for one image
KINDS = ("blank", "dark", "bright", "blurry", "grayscale", "tiny", "aspect")
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class QualitySettings:
    """When an image is unusable (``audit.quality``).

    min_contrast: the luma standard deviation below which an image is ``blank`` (nearly constant).
    min_brightness / max_brightness: mean luma (0..255) below / above which an image is ``dark`` / ``bright``, when
        its luma std is also below ``dim_contrast`` (a dark frame, not a white-on-black digit).
    blur_factor: an image is ``blurry`` when its Laplacian variance is below this fraction of the set's median
        (relative, as sharpness depends on the data's resolution and content); 0 turns the check off.
    max_grayscale_fraction: grayscale images inside an RGB set are flagged only while at most this share of the set
        is grayscale; beyond it the set is a grayscale set stored as RGB and nothing is flagged.
    min_side: an image file whose shorter side is below this many pixels is ``tiny`` (folder data only).
    max_aspect: an image file whose longer side exceeds this multiple of its shorter one is flagged ``aspect``.
    """

    min_contrast: float = 2.0
    min_brightness: float = 20.0
    max_brightness: float = 245.0
    dim_contrast: float = 20.0
    blur_factor: float = 0.05
    max_grayscale_fraction: float = 0.5
    min_side: int = 16
    max_aspect: float = 4.0

    def __post_init__(self) -> None:
        key = "audit.quality."
        for name in ("min_contrast", "min_brightness", "max_brightness", "dim_contrast", "blur_factor"):
            non_negative_number(getattr(self, name), key + name)
        proportion(self.max_grayscale_fraction, key + "max_grayscale_fraction")
        non_negative_int(self.min_side, key + "min_side")
        if positive_number(self.max_aspect, key + "max_aspect") < 1:
            raise ConfigError(f"{key}max_aspect={self.max_aspect!r} must be >= 1 (longer side / shorter side)")
        if self.min_brightness >= self.max_brightness:
            raise ConfigError(f"{key}min_brightness={self.min_brightness!r} must be below "
                              f"{key}max_brightness={self.max_brightness!r}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> QualitySettings:
        """Build from the ``audit.quality`` mapping; an unknown key is a :class:`ConfigError` naming it."""
        return build_settings(cls, values, "audit.quality", "a quality setting")


def image_stats(images: np.ndarray, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Per image: ``brightness`` and ``contrast`` (mean and standard deviation of luma, 0..255), ``blur`` (variance
    of the 3x3 Laplacian of luma over the interior; low = blurry), ``colourfulness`` (the largest difference between
    two channels at any pixel; 0 for 1-channel images) and ``grayscale`` (colourfulness <= GRAYSCALE_TOLERANCE in a
    3-channel set; always False for a 1-channel set)."""
    check_images(images)
    n = len(images)
    stats = {name: np.zeros(n, dtype=np.float32) for name in ("brightness", "contrast", "blur", "colourfulness")}
    for part in chunk_slices(images, chunk):
        block = images[part]
        y = luma(block)
        stats["brightness"][part] = y.mean(dim=(1, 2, 3)).numpy()
        stats["contrast"][part] = y.flatten(1).std(dim=1, correction=0).numpy()
        if min(y.shape[2:]) >= 3:  # smaller images have no interior: blur stays 0
            stats["blur"][part] = F.conv2d(y, _LAPLACIAN).flatten(1).var(dim=1, correction=0).numpy()
        if block.shape[1] == 3:
            stats["colourfulness"][part] = _channel_spread(block)
    stats["grayscale"] = (stats["colourfulness"] <= GRAYSCALE_TOLERANCE) if images.shape[1] == 3 \
        else np.zeros(n, dtype=bool)
    return stats


def _channel_spread(block: np.ndarray) -> np.ndarray:
    """The largest absolute difference between two channels at any pixel of each RGB image."""
    x = torch.from_numpy(np.array(block)).to(torch.int16)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    spread = torch.maximum(torch.maximum((r - g).abs(), (g - b).abs()), (r - b).abs())
    return spread.flatten(1).amax(dim=1).numpy()


def file_stats(paths: Sequence[str | Path]) -> dict[str, np.ndarray]:
    """The original ``width`` and ``height`` of each image file, read from its header only (no decode); 0 x 0 for
    a file that cannot be read (the loader reports those)."""
    width = np.zeros(len(paths), dtype=np.int64)
    height = np.zeros(len(paths), dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            with open_image(path) as img:
                width[i], height[i] = img.size
        except (OSError, ValueError, Image.DecompressionBombError):
            pass
    return {"width": width, "height": height}


def quality_issues(stats: Mapping[str, np.ndarray], file_stats: Mapping[str, np.ndarray] | None = None,
                   settings: QualitySettings | None = None) -> list[tuple[int, str, float]]:
    """``(index, kind, score)`` for each unusable image, sorted by index then :data:`KINDS`. Scores: contrast
    (blank), brightness (dark, bright), blur / the set's median blur (blurry), colourfulness (grayscale), the
    shorter side (tiny), the aspect ratio (aspect).

    The Laplacian variance also shrinks with an image's luma range, so a blank, dark or bright image is neither
    called blurry nor counted in the median blur; a blank image is not called grayscale either."""
    settings = settings or QualitySettings()
    brightness, contrast = np.asarray(stats["brightness"]), np.asarray(stats["contrast"])
    blank = contrast < settings.min_contrast
    dim = contrast < settings.dim_contrast  # little visible content: a white digit on black is not a dark image
    dark, bright = dim & (brightness < settings.min_brightness), dim & (brightness > settings.max_brightness)
    issues = _flag(blank, "blank", contrast) + _flag(dark, "dark", brightness) + _flag(bright, "bright", brightness)
    issues += _blurry(np.asarray(stats["blur"]), blank | dark | bright, settings.blur_factor)
    issues += _grayscale(stats, blank, settings.max_grayscale_fraction)
    if file_stats is not None:
        issues += _file_issues(file_stats, settings)
    return sorted(issues, key=lambda issue: (issue[0], KINDS.index(issue[1])))


def _flag(mask: np.ndarray, kind: str, scores: np.ndarray) -> list[tuple[int, str, float]]:
    return [(int(i), kind, float(scores[i])) for i in np.flatnonzero(mask)]


def _blurry(blur: np.ndarray, skipped: np.ndarray, factor: float) -> list[tuple[int, str, float]]:
    """Images far less sharp than the median of the others (``skipped`` ones left out of both)."""
    rest = blur[~skipped]
    median = float(np.median(rest)) if rest.size else 0.0
    if factor == 0 or median <= 0:
        return []
    ratio = blur / median
    return _flag((ratio < factor) & ~skipped, "blurry", ratio)


def _grayscale(stats: Mapping[str, np.ndarray], blank: np.ndarray, max_fraction: float) -> list[tuple[int, str, float]]:
    """Grayscale images among non-blank ones, unless they are more than ``max_fraction`` of those."""
    gray = np.asarray(stats["grayscale"], dtype=bool) & ~blank
    considered = int((~blank).sum())
    if considered == 0 or gray.sum() > max_fraction * considered:
        return []
    return _flag(gray, "grayscale", np.asarray(stats["colourfulness"]))


def _file_issues(sizes: Mapping[str, np.ndarray], settings: QualitySettings) -> list[tuple[int, str, float]]:
    """``tiny`` and ``aspect`` from the files' own sizes; unreadable files (0 x 0) are left to the loader."""
    width, height = np.asarray(sizes["width"], dtype=np.float64), np.asarray(sizes["height"], dtype=np.float64)
    readable = (width > 0) & (height > 0)
    side = np.minimum(width, height)
    aspect = np.where(readable, np.maximum(width, height) / np.where(readable, side, 1), 1.0)
    return (_flag(readable & (side < settings.min_side), "tiny", side)
            + _flag(readable & (aspect > settings.max_aspect), "aspect", aspect))

