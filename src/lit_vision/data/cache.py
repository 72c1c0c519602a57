"""Decode once, then memory-map: a uint8 ``.npy`` cache keyed by source and content fingerprint.

The second run starts in seconds, no JPEG is decoded per epoch, a dataset larger than RAM still works
(the OS pages it in), and DDP ranks share one copy. One process builds a missing cache while the others that want
the same one (DDP ranks started together, parallel runs) wait on a file lock and then memory-map it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lit_vision.data.arrays import ImageArrays

#: 2: images decoded upright (EXIF orientation), folders list image files only
CACHE_VERSION = 2


def cache_key(parts: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _file(stem: Path, suffix: str) -> Path:
    """``<stem><suffix>``; not ``stem.with_suffix``, which would cut a stem holding a dot (``my.data-<key>``)."""
    return stem.with_name(stem.name + suffix)


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def save_arrays(stem: Path, arrays: ImageArrays) -> None:
    """Write images, labels and metadata; the metadata file is written last and marks completeness."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_npy(_file(stem, ".images.npy"), np.ascontiguousarray(arrays.images))
    _atomic_save_npy(_file(stem, ".labels.npy"), arrays.labels.astype(np.int64))
    meta = {"class_names": arrays.class_names, "sources": arrays.sources, "n": len(arrays)}
    tmp = _file(stem, f".meta.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, _file(stem, ".meta.json"))


def load_arrays(stem: Path) -> ImageArrays | None:
    meta_path = _file(stem, ".meta.json")
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    images = np.load(_file(stem, ".images.npy"), mmap_mode="r")
    labels = np.load(_file(stem, ".labels.npy"))
    if len(images) != meta["n"] or len(labels) != meta["n"]:
        return None
    return ImageArrays(images, labels, meta["class_names"], meta.get("sources", []))


@contextmanager
def _build_lock(stem: Path) -> Iterator[None]:
    """Exclusive lock on ``<stem>.lock`` while one process builds the cache (no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock; concurrent builders still write atomically
        yield
        return
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(_file(stem, ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stem(cache_dir: str | Path, name: str, key_parts: dict) -> Path:
    return Path(cache_dir) / f"{name}-{cache_key(key_parts)}"


def cache_exists(cache_dir: str | Path | None, name: str, key_parts: dict) -> bool:
    """Whether :func:`cached` would find a complete cache for ``key_parts`` (its metadata file, written last)."""
    return cache_dir is not None and _file(_stem(cache_dir, name, key_parts), ".meta.json").exists()


def cached(cache_dir: str | Path | None, name: str, key_parts: dict,
           build: Callable[[], ImageArrays]) -> ImageArrays:
    """Return the cached arrays for ``key_parts`` or build, save and memory-map them.

    A process that finds the cache missing takes ``<stem>.lock``; one that finds it taken waits, then reads the
    cache the first one wrote instead of building it a second time."""
    if cache_dir is None:
        return build()
    stem = _stem(cache_dir, name, key_parts)
    hit = load_arrays(stem)
    if hit is not None:
        return hit
    with _build_lock(stem):
        hit = load_arrays(stem)
        if hit is not None:
            return hit
        save_arrays(stem, build())
    loaded = load_arrays(stem)
    assert loaded is not None
    return loaded
