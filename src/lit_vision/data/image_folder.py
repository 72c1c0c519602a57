"""Decode folders of class sub-folders (``<root>/<class>/<image>``) into uint8 arrays.

As torchvision's ``ImageFolder``: only files with an image extension (:data:`IMAGE_EXTENSIONS`) are read. Anything
else in a class folder (``readme.txt``, ``Thumbs.db``, ``.DS_Store``, a sub-folder) is not read, and is counted and
named in one warning per folder tree. A class folder without any image file is refused (:class:`DataNotFoundError`).
Every image file is decoded upright (its EXIF orientation applied); image files that fail are collected with their
reason and reported together, never silently dropped (unless ``skip_corrupt`` is set, and then they are still listed).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError
from rich.progress import track

from lit_vision import imaging
from lit_vision.data.arrays import ImageArrays
from lit_vision.errors import ConfigError, CorruptImageError, DataNotFoundError
from lit_vision.imaging import RESAMPLE, decode_image

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".heic", ".heif",
                    ".avif"}
#: How many ignored (non-image) entries the warning names before it only counts them.
IGNORED_NAMED = 5


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
    """The image files (:func:`is_image_file`) in ``root/<class>/``, sorted by class then name.

    Other entries (``readme.txt``, ``Thumbs.db``, ``.DS_Store``, sub-folders) are not read: they are counted and
    named in ONE warning for ``root``. A class folder that holds no image file is refused with
    :class:`DataNotFoundError` (a class without examples cannot be learnt or scored). A class folder that does not
    exist under ``root`` is allowed (a test folder may lack a class of train).
    """
    paths: list[Path] = []
    labels: list[int] = []
    ignored: list[str] = []
    empty: list[str] = []
    for label, name in enumerate(class_names):
        folder = root / name
        if not folder.is_dir():
            continue
        n_images = 0
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            path = Path(entry.path)
            if entry.is_file() and is_image_file(path):
                paths.append(path)
                labels.append(label)
                n_images += 1
            else:
                ignored.append(f"{name}/{entry.name}{'/' if entry.is_dir() else ''}")
        if n_images == 0:
            empty.append(str(folder))
    if empty:
        raise DataNotFoundError(
            f"class folder(s) without any image file: {empty} (image files end in "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}). A class needs images to be trained and tested on.\n"
            "Fix: delete the empty folder (the class is then not part of the data) or add images to it.")
    if ignored:
        named = ", ".join(ignored[:IGNORED_NAMED]) + (f", … ({len(ignored) - IGNORED_NAMED} more)"
                                                      if len(ignored) > IGNORED_NAMED else "")
        log.warning("%s: %d entr%s without an image extension not read: %s", root, len(ignored),
                    "y" if len(ignored) == 1 else "ies", named)
    return paths, np.asarray(labels, dtype=np.int64)


def fingerprint(paths: Sequence[Path]) -> str:
    """Cheap content fingerprint: names, sizes and mtimes of every file."""
    import hashlib

    h = hashlib.sha1()
    for p in paths:
        st = p.stat()
        h.update(f"{p}|{st.st_size}|{int(st.st_mtime)}\n".encode())
    return h.hexdigest()


def resize_images(images: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """uint8 ``(N, C, H, W)`` (C = 1 or 3) → ``(N, C, *size)``, resampled exactly as :func:`decode_image` resizes
    (PIL, :data:`RESAMPLE`); returned unchanged when ``size`` is ``None`` or already the size."""
    n, c, h, w = images.shape
    if size is None or (h, w) == tuple(size):
        return images
    if c not in (1, 3):
        raise ConfigError(f"cannot resize {c}-channel images; data.channels must be 1 or 3")
    out = np.empty((n, c, size[0], size[1]), dtype=np.uint8)
    for i in range(n):
        pixels = images[i, 0] if c == 1 else np.ascontiguousarray(images[i].transpose(1, 2, 0))
        resized = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).resize((size[1], size[0]), RESAMPLE))
        out[i] = resized[None] if c == 1 else resized.transpose(2, 0, 1)
    return out


#: what reading a bad image file raises (PIL and the decoders behind it)
READ_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning, UnidentifiedImageError, OSError,
               ValueError, SyntaxError)


def unreadable_reason(exc: BaseException) -> str:
    """One line saying why an image file could not be read (one of :data:`READ_ERRORS`)."""
    if isinstance(exc, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return (f"{type(exc).__name__}: over the {imaging.MAX_IMAGE_PIXELS:,}-pixel decompression-bomb guard "
                f"({exc}); downscale the file, or raise lit_vision.imaging.MAX_IMAGE_PIXELS if you trust it")
    return f"{type(exc).__name__}: {exc}"


def _decode_or_reason(args: tuple[Path, int, tuple[int, int] | None]) -> np.ndarray | str:
    path, channels, size = args
    try:
        return decode_image(path, channels, size)
    except READ_ERRORS as exc:
        return unreadable_reason(exc)


def report_unreadable(bad: Sequence[tuple[str, str]], total: int, skip_corrupt: bool) -> None:
    """Unreadable files (path, reason): a :class:`CorruptImageError` listing them, or with ``skip_corrupt`` a warning
    listing them (they are left out)."""
    if not bad:
        return
    listing = "\n".join(f"  {p}: {reason}" for p, reason in bad[:50])
    more = f"\n  … and {len(bad) - 50} more" if len(bad) > 50 else ""
    msg = (f"{len(bad)} of {total} files could not be read as images:\n{listing}{more}\n"
           "Fix: delete or replace these files, or set data.skip_corrupt=true to train without them "
           "(they are then listed in the log).")
    if not skip_corrupt:
        raise CorruptImageError(msg)
    log.warning(msg)


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
    report_unreadable(bad, len(paths), skip_corrupt)
    good = [i for i, r in enumerate(results) if not isinstance(r, str)]
    shapes = {results[i].shape for i in good}
    if len(shapes) > 1:
        raise ConfigError(f"images have different sizes {sorted(shapes)[:5]} (as (C, H, W)); "
                          "set data.image_size=[H,W] to resize them all")
    if not good:
        raise CorruptImageError("no readable image at all among:\n" + "\n".join(p for p, _ in bad[:20]))
    images = np.stack([results[i] for i in good])
    return ImageArrays(images, labels[good], list(class_names), [str(paths[i]) for i in good])


def split_dirs(root: str | Path | None, train_dirs: Sequence[str | Path] | str | None = None,
               val_dir: str | Path | None = None, test_dir: str | Path | None = None) -> dict[str, list[Path]]:
    """The folders of each split: ``root`` (``<root>/train``, optional ``<root>/val`` and ``<root>/test``) or the
    explicit ``train_dirs`` (one or more, concatenated) with optional ``val_dir``/``test_dir``; both at once is
    refused (one of them would be ignored)."""
    if root is not None and (train_dirs or val_dir or test_dir):
        given = [f"data.source_args.{k}" for k, v in (("train_dirs", train_dirs), ("val_dir", val_dir),
                                                       ("test_dir", test_dir)) if v]
        raise ConfigError(f"data.source=image_folder got both data.root={root} and {', '.join(given)}; set one: "
                          "data.root=<dir> (with <dir>/train, optional <dir>/val and <dir>/test) or "
                          "data.source_args.train_dirs (with optional val_dir and test_dir)")
    if not train_dirs:
        if root is None:
            raise ConfigError("data.source=image_folder needs data.source_args.train_dirs or data.root")
        base = Path(root).expanduser()
        return {"train": [base / "train"], **{s: [base / s] for s in ("val", "test") if (base / s).is_dir()}}
    dirs = [train_dirs] if isinstance(train_dirs, (str, Path)) else list(train_dirs)
    out = {"train": [Path(d).expanduser() for d in dirs]}
    for split, d in (("val", val_dir), ("test", test_dir)):
        if d:
            out[split] = [Path(d).expanduser()]
    return out


def list_folders(roots: Sequence[Path], class_names: Sequence[str]) -> tuple[list[Path], np.ndarray]:
    """The image files of one or more ``<root>/<class>/*`` folders, concatenated in order (:func:`list_files` each);
    a folder with a class folder the classes do not name is refused (its images would be dropped silently)."""
    paths: list[Path] = []
    labels: list[np.ndarray] = []
    for root in roots:
        extra = sorted(set(list_class_folders(root)) - set(class_names))
        if extra:
            raise DataNotFoundError(f"{root} has class folders {extra} that {roots[0]} does not have; "
                                    f"every folder must share the classes {list(class_names)}")
        p, y = list_files(root, class_names)
        paths += p
        labels.append(y)
    return paths, np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)


def load_image_folders(dirs: Sequence[str | Path], channels: int, size: tuple[int, int] | None,
                       class_names: Sequence[str] | None = None, skip_corrupt: bool = False,
                       description: str = "decoding images") -> ImageArrays:
    """Concatenate one or more ``<dir>/<class>/*`` folders (notebook 001 trains on four)."""
    roots = [Path(d).expanduser() for d in dirs]
    names = list(class_names) if class_names is not None else list_class_folders(roots[0])
    paths, labels = list_folders(roots, names)
    return decode_files(paths, labels, names, channels, size, skip_corrupt, description)
