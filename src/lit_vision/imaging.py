"""Decode one image exactly as training does — numpy and PIL only, so a torch-free server can import it.

Training (folder sources), prediction and the HTTP service all decode through :func:`decode_image`; ``prepare``
reads photos for streaming shards through :func:`open_upright` too, and a model trained on those shards is served
through :func:`resize_centre_crop`, its evaluation view. Phone photos are readable everywhere: Pillow
reads AVIF itself, and pillow-heif adds HEIC/HEIF: :func:`open_image` imports and registers it the first time Pillow
cannot identify a file, so decoding JPEGs and PNGs (a CIFAR-10 training run, say) never imports it, and a machine
without pillow-heif reads everything but HEIC.
"""

from __future__ import annotations

import io
import threading
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

#: Decompression-bomb guard: larger images are refused before they are decoded.
MAX_IMAGE_PIXELS = 50_000_000
#: The one resampling filter of the project: folder images and in-memory arrays are resized alike. PIL's bilinear
#: filter widens with the scale factor when shrinking, so downsizing is antialiased.
RESAMPLE = Image.Resampling.BILINEAR


#: Whether pillow-heif's opener is registered with Pillow (``None``: not tried yet; :func:`register_heif`), and
#: the lock of its one import.
_heif_registered: bool | None = None
_heif_lock = threading.Lock()


def register_heif() -> bool:
    """Register pillow-heif's HEIC/HEIF opener with Pillow, once: whether it is registered (``False``: pillow-heif
    is not installed). Imported here, not at the module's top, so that only a file Pillow cannot identify pays for
    it; under a lock, as folder decoding runs in threads."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered is None:
            try:
                import pillow_heif
            except ImportError:
                _heif_registered = False
            else:
                pillow_heif.register_heif_opener()
                _heif_registered = True
    return bool(_heif_registered)


def open_image(source: str | Path | IO[bytes]) -> Image.Image:
    """``PIL.Image.open``, HEIC/HEIF included: when Pillow cannot identify the file and pillow-heif's opener is not
    registered yet, it is registered (:func:`register_heif`) and the file opened once more. Raises
    ``UnidentifiedImageError`` as Pillow does when neither can read it."""
    tried = _heif_registered is not None
    try:
        return Image.open(source)
    except UnidentifiedImageError:
        if tried or not register_heif():
            raise
    if hasattr(source, "seek"):
        source.seek(0)
    return Image.open(source)


def upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF Orientation tag: a phone stores a portrait photo sideways plus a tag saying how to turn it."""
    orientation = img.getexif().get(ExifTags.Base.Orientation, 1)
    return ImageOps.exif_transpose(img) if orientation not in (None, 1) else img


def to_8_bit(img: Image.Image) -> Image.Image:
    """A 16/32-bit integer image (``I;16*``, ``I``: 16-bit PNG, TIFF) scaled to 8-bit ``L``: PIL's own conversion
    clips at 255, which turns a 16-bit photo almost white. Other modes are returned as they are."""
    if not img.mode.startswith("I"):
        return img
    pixels = np.asarray(img).astype(np.int64)
    bits = 16 if img.mode.startswith("I;16") or pixels.max(initial=0) <= 65535 else 32
    return Image.fromarray((np.clip(pixels, 0, None) >> (bits - 8)).clip(0, 255).astype(np.uint8), "L")


def _is_empty(source: Path | bytes) -> bool:
    return len(source) == 0 if isinstance(source, (bytes, bytearray)) else Path(source).stat().st_size == 0


def _check_pixels(img: Image.Image) -> None:
    if img.width * img.height > MAX_IMAGE_PIXELS:
        raise ValueError(f"image is {img.width}x{img.height}, over the {MAX_IMAGE_PIXELS:,}-pixel "
                         "decompression-bomb guard")


def open_upright(source: Path | bytes, channels: int, short_side: int | None = None) -> Image.Image:
    """Open a file (path) or its bytes as an upright ``L``/``RGB`` image (EXIF orientation applied, any PIL mode
    converted), its shorter side reduced to ``short_side`` (never enlarged; ``None``: the full size). A large JPEG is
    decoded at a reduced scale (PIL's draft mode: the decoder skips the detail the resize would throw away).
    Raises ``ValueError``/``OSError`` with a readable reason on any failure."""
    if _is_empty(source):
        raise ValueError("empty file (0 bytes)")
    opened = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        with open_image(opened) as img:
            _check_pixels(img)
            if short_side is not None and img.format == "JPEG":
                scale = short_side / min(img.size)
                img.draft("L" if channels == 1 else "RGB", (round(img.width * scale), round(img.height * scale)))
            img = to_8_bit(upright(img)).convert("L" if channels == 1 else "RGB")
    if short_side is not None and min(img.size) > short_side:
        scale = short_side / min(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), RESAMPLE)
    return img


def _centre_offset(image: int, crop: int) -> int:
    """Where a centre crop of ``crop`` pixels starts on an axis of ``image`` pixels: torchvision's ``center_crop``
    rounding (``int(round((image - crop) / 2.0))``), and its zero padding — left/top ``(crop - image) // 2`` — when
    the crop is the larger (PIL's ``crop`` fills outside the image with zeros)."""
    return -((crop - image) // 2) if crop > image else int(round((image - crop) / 2.0))


def resize_centre_crop(img: Image.Image, size: tuple[int, int], crop_fraction: float) -> Image.Image:
    """The evaluation view of ``data=shards`` (``streaming.resize_centre_crop``, timm's crop_pct) with PIL: the
    shorter side resized to ``round(min(size) / crop_fraction)`` keeping the aspect ratio (the longer side truncated,
    as torchvision's ``resize`` does), then the centre ``size`` (H, W) cropped, so a served photo is framed as the
    validation and test photos were rather than squashed."""
    shorter = int(round(min(size) / crop_fraction))
    width, height = img.size
    if width <= height:
        new_w, new_h = shorter, int(shorter * height / width)
    else:
        new_w, new_h = int(shorter * width / height), shorter
    if (new_w, new_h) != img.size:
        img = img.resize((new_w, new_h), RESAMPLE)
    top, left = _centre_offset(new_h, size[0]), _centre_offset(new_w, size[1])
    return img.crop((left, top, left + size[1], top + size[0]))


def decode_image(source: Path | bytes, channels: int, size: tuple[int, int] | None,
                 crop_fraction: float | None = None) -> np.ndarray:
    """Decode a file (path) or its bytes to uint8 ``(C, H, W)``, upright (EXIF orientation applied), converted to
    ``channels`` (any PIL mode: RGBA, palette, 16-bit, CMYK, grayscale; JPEG, PNG, HEIC, AVIF …) and brought to
    ``size`` with :data:`RESAMPLE`: squashed to it (the in-memory data's decoding), or — with ``crop_fraction``, a
    model trained on ``data=shards`` — resized on the shorter side and centre-cropped (:func:`resize_centre_crop`),
    as that model was validated and tested. Raises ``ValueError``/``OSError`` with a readable reason on any
    failure."""
    img = open_upright(source, channels)
    if size is not None and crop_fraction is not None:
        img = resize_centre_crop(img, size, crop_fraction)
    elif size is not None and (img.height, img.width) != tuple(size):
        img = img.resize((size[1], size[0]), RESAMPLE)
    array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
