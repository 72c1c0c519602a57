"""Small synthetic datasets written to temp dirs, in the on-disk formats the real loaders read."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def class_pattern(label: int, n: int, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy images whose mean brightness depends on the class, so a net can learn something quickly."""
    base = 20 + 200 * label / 9
    noise = rng.normal(0, 25, size=(n, size, size, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_image_folder(root: Path, classes: Sequence[str], per_class: int, size: int = 32, channels: int = 3,
                       seed: int = 0, ext: str = "png") -> Path:
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, pixels in enumerate(class_pattern(label, per_class, size, channels, rng)):
            img = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode="L" if channels == 1 else "RGB")
            img.save(folder / f"{i:04d}.{ext}")
    return root


def write_cifar_folders(root: Path, train_per_class: int = 8, test_per_class: int = 4, seed: int = 0) -> Path:
    """``root/train/<class>/*.png`` and ``root/test/<class>/*.png`` like ../shared/datasets/cifar10-jpeg."""
    write_image_folder(root / "train", CIFAR_CLASSES, train_per_class, seed=seed)
    write_image_folder(root / "test", CIFAR_CLASSES, test_per_class, seed=seed + 1)
    return root


def write_cifar_batches(root: Path, per_batch_per_class: int = 2, test_per_class: int = 3, seed: int = 0) -> Path:
    """torchvision's ``root/cifar-10-batches-py`` pickles (5 train batches, test batch, meta)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)

    def batch(per_class: int) -> dict:
        labels = np.repeat(np.arange(10), per_class)
        data = np.concatenate([class_pattern(c, per_class, 32, 3, rng) for c in range(10)])
        return {"data": data.transpose(0, 3, 1, 2).reshape(len(labels), -1), "labels": labels.tolist()}

    for i in range(1, 6):
        with open(folder / f"data_batch_{i}", "wb") as f:
            pickle.dump(batch(per_batch_per_class), f)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump(batch(test_per_class), f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES}, f)
    return root
