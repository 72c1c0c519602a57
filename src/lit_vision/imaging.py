"""Decode one image exactly as training does — numpy and PIL only, so a torch-free server can import it.

Training (folder sources), prediction and the HTTP service all decode through :func:`decode_image`.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

#: Decompression-bomb guard: larger images are refused before they are decoded.
MAX_IMAGE_PIXELS = 50_000_000
#: The one resampling filter of the project: folder images and in-memory arrays are resized alike. PIL's bilinear
#: filter widens with the scale factor when shrinking, so downsizing is antialiased.
RESAMPLE = Image.Resampling.BILINEAR


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag: a phone stores a portrait photo sideways plus a tag saying how to turn it."""
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    return ImageOps.exif_transpose(img) if orientation not in (None, 1) else img


def decode_image(source: Path | bytes, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """Decode a file (path) or its bytes to uint8 ``(C, H, W)``, upright (EXIF orientation applied), converted to
    ``channels`` (any PIL mode: RGBA, palette, 16-bit, CMYK, grayscale) and resized to ``size`` with
    :data:`RESAMPLE`; raises ``ValueError``/``OSError`` with a readable reason on any failure."""
    empty = len(source) == 0 if isinstance(source, (bytes, bytearray)) else Path(source).stat().st_size == 0
    if empty:
        raise ValueError("empty file (0 bytes)")
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        with Image.open(opened) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image is {img.width}x{img.height}, over the {MAX_IMAGE_PIXELS:,}-pixel "
                                 "decompression-bomb guard")
            img = upright(img)
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), RESAMPLE)
            array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
