"""Decode folders of class sub-folders (``<root>/<class>/<image>``) into uint8 arrays.

Every file is decoded; files that fail are collected with their reason and reported together,
never silently dropped (unless ``skip_corrupt`` is set, and then they are still listed).
"""

from __future__ import annotations

import logging
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from lit_vision.data.arrays import ImageArrays
from lit_vision.errors import ConfigError, CorruptImageError, DataNotFoundError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
#: Guard against decompression bombs: more pixels than this is refused (PIL's own default is 89M).
MAX_IMAGE_PIXELS = 50_000_000


def is_image_file(path: Path) -> bool:
    """An image by its extension (as torchvision's ImageFolder decides), not a hidden file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def list_class_folders(root: Path) -> list[str]:
    if not root.is_dir():
        raise DataNotFoundError(f"image folder {root} does not exist (expected {root}/<class>/<image files>)")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataNotFoundError(f"image folder {root} has no class sub-folders (expected {root}/<class>/*.jpg)")
    return classes


def list_files(root: Path, class_names: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """All files under ``root/<class>/`` (every file, so non-images are reported, not ignored)."""
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file() and not entry.name.startswith("."):
                paths.append(Path(entry.path))
                labels.append(label)
    return paths, np.asarray(labels, dtype=np.int64)


def fingerprint(paths: Sequence[Path]) -> str:
    """Cheap content fingerprint: names, sizes and mtimes of every file."""
    import hashlib

    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def decode_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """Decode one file to uint8 ``(C, H, W)``; raises with a readable reason on any failure."""
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        with Image.open(path) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise ValueError(f"image is {img.width}x{img.height}, over the {MAX_IMAGE_PIXELS:,}-pixel "
                                 "decompression-bomb guard")
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and (img.height, img.width) != tuple(size):
                img = img.resize((size[1], size[0]), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _decode_or_reason(args: tuple[Path, int, tuple[int, int] | None]) -> np.ndarray | str:
    path, channels, size = args
    try:
        return decode_image(path, channels, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return (f"{type(exc).__name__}: over the {MAX_IMAGE_PIXELS:,}-pixel decompression-bomb guard ({exc}); "
                "downscale the file, or raise lit_vision.data.image_folder.MAX_IMAGE_PIXELS if you trust it")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return f"{type(exc).__name__}: {exc}"


def decode_files(paths: Sequence[Path], labels: np.ndarray, class_names: Sequence[str], channels: int,
                 size: tuple[int, int] | None, skip_corrupt: bool = False,
                 description: str = "decoding images") -> ImageArrays:
    """Decode ``paths`` (threads: PIL releases the GIL while decoding) into one uint8 array."""
    if not paths:
        raise DataNotFoundError(f"no image files found for classes {list(class_names)}")
    jobs = [(p, channels, size) for p in paths]
    workers = min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(track(pool.map(_decode_or_reason, jobs, chunksize=64), total=len(jobs),
                             description=description, transient=True))
    bad = [(str(p), r) for p, r in zip(paths, results) if isinstance(r, str)]
    if bad:
        listing = "\n".join(f"  {p}: {reason}" for p, reason in bad[:50])
        more = f"\n  … and {len(bad) - 50} more" if len(bad) > 50 else ""
        msg = (f"{len(bad)} of {len(paths)} files could not be read as images:\n{listing}{more}\n"
               "Fix: delete or replace these files, or set data.skip_corrupt=true to train without them "
               "(they are then listed in the log).")
        if not skip_corrupt:
            raise CorruptImageError(msg)
        log.warning(msg)
    good = [i for i, r in enumerate(results) if not isinstance(r, str)]
    shapes = {results[i].shape for i in good}
    if len(shapes) > 1:
        raise ConfigError(f"images have different sizes {sorted(shapes)[:5]} (as (C, H, W)); "
                          "set data.image_size=[H,W] to resize them all")
    if not good:
        raise CorruptImageError("no readable image at all among:\n" + "\n".join(p for p, _ in bad[:20]))
    images = np.stack([results[i] for i in good])
    return ImageArrays(images, labels[good], list(class_names), [str(paths[i]) for i in good])


def load_image_folders(dirs: Sequence[str | Path], channels: int, size: tuple[int, int] | None,
                       class_names: Sequence[str] | None = None, skip_corrupt: bool = False,
                       description: str = "decoding images") -> ImageArrays:
    """Concatenate one or more ``<dir>/<class>/*`` folders (notebook 001 trains on four)."""
    roots = [Path(d).expanduser() for d in dirs]
    names = list(class_names) if class_names is not None else list_class_folders(roots[0])
    paths: list[Path] = []
    labels: list[np.ndarray] = []
    for root in roots:
        found = list_class_folders(root)
        extra = sorted(set(found) - set(names))
        if extra:
            raise DataNotFoundError(f"{root} has class folders {extra} that {roots[0]} does not have; "
                                    f"every folder must share the classes {names}")
        p, y = list_files(root, names)
        paths += p
        labels.append(y)
    return decode_files(paths, np.concatenate(labels), names, channels, size, skip_corrupt, description)
