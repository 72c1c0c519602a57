"""Refuse an image-folder cache that cannot fit, before decoding starts rather than hours in.

A folder source decodes every image into one uint8 array (:mod:`lit_vision.data.cache`). Building it holds the
decoded images in a list and then ``np.stack``s them, so the peak memory is about twice the array; with a
``cache_dir`` the array is then written to that disk. :func:`check_cache_budget` compares both with what the machine
has and, when either would not fit, raises one :class:`~lit_vision.errors.ConfigError` that advises preparing
streaming shards (``python -m lit_vision.prepare``) instead.

The free-disk and available-memory readers are module-level functions so tests can replace them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

from lit_vision.errors import ConfigError
from lit_vision.imaging import open_image

#: Disk left free besides the cache (checkpoints, logs, the temporary file the cache is written through).
DISK_MARGIN_BYTES = 1_000_000_000
#: Peak memory while building, in multiples of the cache: the decoded list plus the stacked array.
BUILD_MEMORY_FACTOR = 2
SPLIT_NAMES = ("train", "val", "test")
#: What opening an image header may raise; such a file is left to the decoder, which reports it.
HEADER_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def cache_bytes(n_images: int, channels: int, size: tuple[int, int]) -> int:
    """The bytes of the uint8 ``(n_images, channels, H, W)`` array the cache holds."""
    return n_images * channels * size[0] * size[1]


def human_bytes(n: float) -> str:
    """Decimal units, as disks are sold: ``12.4 GB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def free_disk_bytes(path: str | Path) -> int:
    """Free bytes on the disk that holds ``path``, or would hold it (the nearest existing parent)."""
    path = Path(path).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def available_memory_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), or ``None`` where the system does not say (e.g. macOS)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the value is in kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def header_size(image: Path) -> tuple[int, int] | None:
    """``(H, W)`` read from the file's header (nothing decoded), or ``None`` when the header cannot be read."""
    try:
        with open_image(image) as img:
            width, height = img.size
    except HEADER_ERRORS:
        return None
    return height, width


def dataset_root(folder: Path) -> Path:
    """The ``data.root`` a folder belongs to: the parent of ``train``/``val``/``test``, else the folder itself."""
    return folder.parent if folder.name in SPLIT_NAMES else folder


def _disk_over(total: int, cache_dir: str | Path | None) -> str | None:
    """The disk budget ``total`` cache bytes exceed, as a phrase for the message, or ``None``."""
    if cache_dir is None:
        return None
    free = free_disk_bytes(cache_dir)
    if total <= free - DISK_MARGIN_BYTES:
        return None
    return (f"the {human_bytes(free)} free on the disk of paths.cache_dir={cache_dir} (less a "
            f"{human_bytes(DISK_MARGIN_BYTES)} margin)")


def _memory_over(total: int) -> str | None:
    """The memory budget building a ``total``-byte cache exceeds, as a phrase for the message, or ``None``."""
    memory = available_memory_bytes()
    peak = BUILD_MEMORY_FACTOR * total
    if memory is None or peak <= memory:
        return None
    return (f"the {human_bytes(memory)} of available memory (building the cache holds about "
            f"{BUILD_MEMORY_FACTOR}x the cache, {human_bytes(peak)}, in memory)")


def _advice(root: Path, disk_full: bool) -> str:
    fix = (f"Fix: prepare streaming shards instead: python -m lit_vision.prepare data=image_folder "
           f"data.root={dataset_root(root)} out=<shard dir>, then train with data=shards data.root=<shard dir>; "
           "or set a smaller data.image_size")
    return fix + (", or point paths.cache_dir at a bigger disk." if disk_full else ".")


def check_cache_budget(root: Path, n_images: int, channels: int, size: tuple[int, int] | None,
                       cache_dir: str | Path | None, first_image: Path | None) -> None:
    """Raise :class:`ConfigError` when caching ``n_images`` of ``root`` would not fit the disk or the memory.

    With ``size`` ``None`` every image keeps its own (shared) size, taken here from ``first_image``'s header; when
    that cannot be read the check is skipped and decoding reports the file.
    """
    size = size or (header_size(first_image) if first_image is not None else None)
    if size is None or n_images == 0:
        return
    total = cache_bytes(n_images, channels, size)
    disk, memory = _disk_over(total, cache_dir), _memory_over(total)
    if disk is None and memory is None:
        return
    per_image = cache_bytes(1, channels, size)
    raise ConfigError(
        f"image folder {root}: caching its {n_images:,} images at {channels}x{size[0]}x{size[1]} "
        f"({human_bytes(per_image)} each) takes {human_bytes(total)}, more than "
        + " and ".join(p for p in (disk, memory) if p) + ".\n" + _advice(root, disk_full=disk is not None))
