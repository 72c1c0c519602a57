"""Data sources: where pixels come from. Each returns :class:`SourceSplits` of uint8 arrays.

One registry, ``SOURCES``, maps the ``data.source`` config value to a loader. Every loader takes a local
``root`` (offline use) and, where the dataset is downloadable, ``download=True`` for online users.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.cache import cached
from lit_vision.data.image_folder import fingerprint, list_class_folders, list_files, load_image_folders, decode_files
from lit_vision.errors import ConfigError, DataNotFoundError

SourceLoader = Callable[..., SourceSplits]
SOURCES: dict[str, SourceLoader] = {}

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    def wrap(fn: SourceLoader) -> SourceLoader:
        SOURCES[name] = fn
        return fn
    return wrap


def load_source(name: str, **kwargs: Any) -> SourceSplits:
    if name not in SOURCES:
        raise ConfigError(f"data.source={name!r} is not a known source; choose one of {sorted(SOURCES)}")
    return SOURCES[name](**kwargs)


def _size(image_size: int | Sequence[int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    return (int(image_size[0]), int(image_size[1]))


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 → (N, channels, H, W)."""
    if images.ndim == 3:
        images = images[:, None]
    else:
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1] == channels:
        return np.ascontiguousarray(images)
    if images.shape[1] == 1 and channels == 3:
        return np.ascontiguousarray(np.repeat(images, 3, axis=1))
    if images.shape[1] == 3 and channels == 1:
        gray = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
        return np.ascontiguousarray(np.round(gray)[:, None].astype(np.uint8))
    raise ConfigError(f"cannot convert {images.shape[1]}-channel images to data.channels={channels}")


@register_source("digits")
def load_digits(channels: int = 1, test_fraction: float = 0.2, seed: int = 0, **_: Any) -> SourceSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images): works anywhere, offline, in seconds."""
    from sklearn.datasets import load_digits as sk_digits

    from lit_vision.data.split import stratified_split

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    arrays = ImageArrays(_to_channels(images, channels), labels, [str(c) for c in range(10)])
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)
    return SourceSplits(train=arrays.subset(train_idx), test=arrays.subset(test_idx))


def _torchvision(cls_name: str, root: Path, download: bool, channels: int) -> SourceSplits:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=str(root), train=train, download=download)
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        targets = np.asarray(ds.targets, dtype=np.int64)
        splits[split] = ImageArrays(_to_channels(data, channels), targets, list(ds.classes))
    return SourceSplits(**splits)


def _missing(name: str, root: Path, layouts: str, example: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"No {name} data at data.root={root}. Expected {layouts}.\n"
        f"Fix: point data.root at a local copy (e.g. data.root={example}), set LIT_VISION_DATA_DIR, "
        "or pass data.download=true on a machine with internet access.")


def _torchvision_idx(name: str, cls_name: str, root: Path, download: bool, channels: int) -> SourceSplits:
    raw = root / cls_name / "raw"
    alt = root / "raw"
    if not raw.is_dir() and alt.is_dir():
        root = root.parent  # data.root pointed at <root>/<Name> itself
    elif not raw.is_dir() and not download:
        raise _missing(name, root, f"{root}/{cls_name}/raw/*-ubyte (torchvision layout)", "../shared/datasets")
    try:
        return _torchvision(cls_name, root, download, channels)
    except RuntimeError as exc:
        raise _missing(name, root, f"{root}/{cls_name}/raw/*-ubyte ({exc})", "../shared/datasets") from exc


@register_source("mnist")
def load_mnist(root: str, download: bool = False, channels: int = 1, **_: Any) -> SourceSplits:
    return _torchvision_idx("MNIST", "MNIST", Path(root), download, channels)


@register_source("fashion_mnist")
def load_fashion_mnist(root: str, download: bool = False, channels: int = 1, **_: Any) -> SourceSplits:
    return _torchvision_idx("Fashion-MNIST", "FashionMNIST", Path(root), download, channels)


def _cached_folder(root: Path, channels: int, size: tuple[int, int] | None, cache_dir: str | None,
                   skip_corrupt: bool, class_names: Sequence[str] | None = None, label: str = "") -> ImageArrays:
    found = list_class_folders(root)
    names = list(class_names) if class_names is not None else found
    extra = sorted(set(found) - set(names))
    if extra:  # never drop a folder of images silently
        raise DataNotFoundError(f"{root} has class folders {extra} that the other folders (or "
                                f"source_args.class_names) do not have; every folder must share the classes {names} (to train on a subset, keep "
                                "the folders and set data.mapping.classes)")
    paths, labels = list_files(root, names)
    key = {"kind": "folder", "root": str(root.resolve()), "channels": channels, "size": size,
           "classes": names, "files": fingerprint(paths), "skip_corrupt": skip_corrupt}
    return cached(cache_dir, f"{root.name}-{label or 'folder'}", key,
                  lambda: decode_files(paths, labels, names, channels, size, skip_corrupt,
                                       f"decoding {root} (once; cached)"))


def _folder_splits(root: Path, channels: int, size: tuple[int, int] | None, cache_dir: str | None,
                   skip_corrupt: bool, class_names: Sequence[str] | None = None) -> SourceSplits:
    train = _cached_folder(root / "train", channels, size, cache_dir, skip_corrupt, class_names, root.name)
    out = {"train": train}
    for split in ("val", "test"):
        if (root / split).is_dir():
            out[split] = _cached_folder(root / split, channels, size, cache_dir, skip_corrupt,
                                        train.class_names, root.name)
    return SourceSplits(**out)


@register_source("cifar10")
def load_cifar10(root: str, download: bool = False, channels: int = 3, image_size: Any = None,
                 cache_dir: str | None = None, skip_corrupt: bool = False, **_: Any) -> SourceSplits:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py/`` or from an image-folder export.

    The layout is detected: ``<root>/cifar-10-batches-py`` (or ``root`` being that folder) → torchvision;
    ``<root>/train/<class>/`` → image folders.
    """
    path = Path(root).expanduser()
    if path.name == "cifar-10-batches-py" and path.is_dir():
        path = path.parent
    if download and not (path / "cifar-10-batches-py").is_dir() and not (path / "train").is_dir():
        import torchvision.datasets as tvd

        tvd.CIFAR10(root=str(path), train=True, download=True)  # fetches and verifies the archive
    if (path / "cifar-10-batches-py").is_dir():
        return read_cifar_batches(path / "cifar-10-batches-py", channels)
    if (path / "train").is_dir():
        return _folder_splits(path, channels, _size(image_size), cache_dir, skip_corrupt)
    raise _missing("CIFAR-10", path, f"{path}/cifar-10-batches-py/ (torchvision) or {path}/train/<class>/*.jpg "
                   f"and {path}/test/<class>/*.jpg (image folders)", "../shared/datasets/cifar10-jpeg")


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's python batches are pickles: allow numpy arrays and plain values, never arbitrary code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch file")


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(f, encoding="latin1").load()


def read_cifar_batches(folder: Path, channels: int = 3) -> SourceSplits:
    """Read torchvision's ``cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta)."""
    meta_path = folder / "batches.meta"
    names = [str(n) for n in _unpickle(meta_path)["label_names"]] if meta_path.exists() else CIFAR10_CLASSES

    def read(files: list[Path]) -> ImageArrays:
        missing = [str(f) for f in files if not f.exists()]
        if missing:
            raise DataNotFoundError(f"CIFAR-10 batch files missing: {missing}; re-download with data.download=true")
        batches = [_unpickle(f) for f in files]
        data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches]).reshape(-1, 3, 32, 32)
        labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for b in batches])
        return ImageArrays(_to_channels(data.transpose(0, 2, 3, 1), channels), labels, names)

    train = read([folder / f"data_batch_{i}" for i in range(1, 6)])
    return SourceSplits(train=train, test=read([folder / "test_batch"]))


@register_source("fer2013")
def load_fer2013(root: str, channels: int = 1, image_size: Any = 48, cache_dir: str | None = None,
                 skip_corrupt: bool = False, **_: Any) -> SourceSplits:
    """FER2013 in the Kaggle layout: ``<root>/train/<emotion>/*.jpg`` and ``<root>/test/<emotion>/*.jpg``."""
    path = Path(root).expanduser()
    if not (path / "train").is_dir():
        raise _missing("FER2013", path, f"{path}/train/<emotion>/*.jpg and {path}/test/<emotion>/*.jpg "
                       "(Kaggle msambare/fer2013 layout)", "../shared/datasets/fer2013")
    return _folder_splits(path, channels, _size(image_size), cache_dir, skip_corrupt)


@register_source("image_folder")
def load_folders(train_dirs: Sequence[str] | str | None = None, val_dir: str | None = None,
                 test_dir: str | None = None, root: str | None = None, channels: int = 3,
                 image_size: Any = None, cache_dir: str | None = None, skip_corrupt: bool = False,
                 class_names: Sequence[str] | None = None, **_: Any) -> SourceSplits:
    """Any folders of class sub-folders: several train dirs are concatenated; val and test are optional.

    With only ``root`` set, ``<root>/train``, ``<root>/val`` and ``<root>/test`` are used.
    """
    if train_dirs is None:
        if root is None:
            raise ConfigError("data.source=image_folder needs data.source_args.train_dirs or data.root")
        return _folder_splits(Path(root).expanduser(), channels, _size(image_size), cache_dir,
                              skip_corrupt, class_names)
    dirs = [train_dirs] if isinstance(train_dirs, str) else list(train_dirs)
    size = _size(image_size)
    names = list(class_names) if class_names else list_class_folders(Path(dirs[0]).expanduser())
    parts = [_cached_folder(Path(d).expanduser(), channels, size, cache_dir, skip_corrupt, names, "train")
             for d in dirs]
    train = parts[0] if len(parts) == 1 else ImageArrays(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), names,
        sum((p.sources for p in parts), []))
    out = {"train": train}
    for split, d in (("val", val_dir), ("test", test_dir)):
        if d:
            out[split] = _cached_folder(Path(d).expanduser(), channels, size, cache_dir, skip_corrupt, names, split)
    return SourceSplits(**out)


__all__ = ["SOURCES", "register_source", "load_source", "load_image_folders"]
