"""Synthetic datasets written in the on-disk layouts the real loaders read: for tests, benchmarks and dry runs.

Each class gets its own mean brightness plus noise, so a net learns something within a few steps; the files go
through the same loaders as the real datasets (IDX files, CIFAR's python batches, image folders). numpy + PIL only.
"""

from __future__ import annotations

import pickle
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FER_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]


def class_pattern(label: int, n: int, size: int, channels: int, rng: np.random.Generator) -> np.ndarray:
    """Noisy images whose mean brightness depends on the class, so a net can learn something quickly."""
    base = 20 + 200 * label / 9
    noise = rng.normal(0, 25, size=(n, size, size, channels))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# --- image folders -------------------------------------------------------------------------------------------
def write_image_folder(root: Path, classes: Sequence[str], per_class: int, size: int = 32, channels: int = 3,
                       seed: int = 0, ext: str = "png") -> Path:
    """``root/<class>/<i>.<ext>``, ``per_class`` images of each class."""
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


# --- CIFAR's python batches ----------------------------------------------------------------------------------
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


# --- MNIST / Fashion-MNIST IDX files -------------------------------------------------------------------------
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


# --- every notebook dataset at once --------------------------------------------------------------------------
def write_notebook_datasets(root: Path, n_train: int = 10_000, n_test: int = 1_000, seed: int = 0) -> Path:
    """All four notebook datasets under ``root`` as ``../shared/datasets`` lays them out (``MNIST/``,
    ``FashionMNIST/``, ``cifar10-jpeg/`` as CIFAR's python batches, ``fer2013/``), about ``n_train`` training and
    ``n_test`` test images each: a data root for every notebook preset where the real data is not at hand."""
    for folder in ("MNIST", "FashionMNIST"):
        write_torchvision_idx(root, folder, n_train, n_test, seed)
    write_cifar_batches(root / "cifar10-jpeg", max(1, n_train // 50), max(1, n_test // 10), seed)
    per_class = {c: max(1, n_train // len(FER_CLASSES)) for c in FER_CLASSES}
    write_fer_folders(root / "fer2013", per_class, {c: max(1, n_test // len(FER_CLASSES)) for c in FER_CLASSES},
                      seed=seed)
    return root
