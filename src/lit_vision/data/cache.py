"""Decode once, then memory-map: a uint8 ``.npy`` cache keyed by source and content fingerprint.

The second run starts in seconds, no JPEG is decoded per epoch, a dataset larger than RAM still works
(the OS pages it in), and DDP ranks share one copy.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from lit_vision.data.arrays import ImageArrays

CACHE_VERSION = 1


def cache_key(parts: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
    os.replace(tmp, path)


def save_arrays(stem: Path, arrays: ImageArrays) -> None:
    """Write images, labels and metadata; the metadata file is written last and marks completeness."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save_npy(stem.with_suffix(".images.npy"), np.ascontiguousarray(arrays.images))
    _atomic_save_npy(stem.with_suffix(".labels.npy"), arrays.labels.astype(np.int64))
    meta = {"class_names": arrays.class_names, "sources": arrays.sources, "n": len(arrays)}
    tmp = stem.with_suffix(f".meta.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, stem.with_suffix(".meta.json"))


def load_arrays(stem: Path) -> ImageArrays | None:
    meta_path = stem.with_suffix(".meta.json")
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    images = np.load(stem.with_suffix(".images.npy"), mmap_mode="r")
    labels = np.load(stem.with_suffix(".labels.npy"))
    if len(images) != meta["n"] or len(labels) != meta["n"]:
        return None
    return ImageArrays(images, labels, meta["class_names"], meta.get("sources", []))


def cached(cache_dir: str | Path | None, name: str, key_parts: dict,
           build: Callable[[], ImageArrays]) -> ImageArrays:
    """Return the cached arrays for ``key_parts`` or build, save and memory-map them."""
    if cache_dir is None:
        return build()
    stem = Path(cache_dir) / f"{name}-{cache_key(key_parts)}"
    hit = load_arrays(stem)
    if hit is not None:
        return hit
    save_arrays(stem, build())
    loaded = load_arrays(stem)
    assert loaded is not None
    return loaded
