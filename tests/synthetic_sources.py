"""Synthetic MNIST/Fashion-MNIST IDX files and FER2013-style folders, in the layouts the real loaders read."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image

FER_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """IDX3 uint8 file: magic 0x00000803, then N, H, W as big-endian int32, then the pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x0803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    """IDX1 uint8 file: magic 0x00000801, then N, then the labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack(">II", 0x0801, len(labels)) + labels.astype(np.uint8).tobytes())


def idx_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images whose brightness depends on the label (0..9, every class present)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = np.clip(20 + 22 * labels[:, None, None] + rng.normal(0, 20, (n, 28, 28)), 0, 255).astype(np.uint8)
    return images, labels


def write_torchvision_idx(root: Path, folder: str = "MNIST", n_train: int = 60, n_test: int = 30,
                          seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<root>/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision's uncompressed layout).

    Returns the arrays written, per split, so tests can compare what the loader read back.
    """
    raw = root / folder / "raw"
    written = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images, labels = idx_arrays(n, seed + (split == "test"))
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        written[split] = (images, labels)
    return written


def write_class_images(folder: Path, n: int, label: int, size: int = 48, mode: str = "L", seed: int = 0,
                       ext: str = "jpg") -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for i in range(n):
        pixels = np.clip(30 + 30 * label + rng.normal(0, 15, shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode=mode).save(folder / f"{i:05d}.{ext}")


def write_fer_folders(root: Path, train: Mapping[str, int] | None = None, test: Mapping[str, int] | None = None,
                      size: int = 48, seed: int = 0) -> Path:
    """Kaggle msambare layout ``root/{train,test}/<emotion>/*.jpg``, 48x48 grayscale JPEGs."""
    train = train or {c: 6 for c in FER_CLASSES}
    test = test or {c: 3 for c in FER_CLASSES}
    for split, counts in (("train", train), ("test", test)):
        for c in FER_CLASSES:
            write_class_images(root / split / c, counts.get(c, 0), FER_CLASSES.index(c), size, seed=seed)
    return root
