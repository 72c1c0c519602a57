"""Data sources: where pixels come from. Each returns :class:`SourceSplits` of uint8 arrays.

One registry, ``SOURCES``, maps the ``data.source`` config value to a loader. Every loader takes a local
``root`` (offline use) and, where the dataset is downloadable, ``download=True`` for online users.

Every loader honours ``channels`` (1 or 3) and ``image_size`` (``[H, W]``, an int for a square, or ``None`` for the
source's own size): folder sources decode to that size (the size is part of their cache key), array sources
(digits, MNIST, Fashion-MNIST, CIFAR-10 batches) convert and resize in memory with the same resampling
(:func:`~lit_vision.data.image_folder.resize_images`). A loader declares every argument it takes; there is no
catch-all, and :func:`load_source` refuses an argument the loader does not declare.
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Sequence
from collections.abc import Sequence as SequenceABC
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.budget import check_cache_budget
from lit_vision.data.cache import cache_exists, cached
from lit_vision.data.image_folder import (
    decode_files,
    fingerprint,
    list_class_folders,
    list_files,
    load_image_folders,
    resize_images,
    split_dirs,
)
from lit_vision.errors import ConfigError, DataNotFoundError

SourceLoader = Callable[..., SourceSplits]
SOURCES: dict[str, SourceLoader] = {}

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def register_source(name: str) -> Callable[[SourceLoader], SourceLoader]:
    def wrap(fn: SourceLoader) -> SourceLoader:
        SOURCES[name] = fn
        return fn
    return wrap


def get_loader(name: str) -> SourceLoader:
    if name not in SOURCES:
        raise ConfigError(f"data.source={name!r} is not a known source; choose one of {sorted(SOURCES)}")
    return SOURCES[name]


def loader_parameters(loader: SourceLoader) -> tuple[dict[str, inspect.Parameter], bool]:
    """The keyword arguments ``loader`` declares (by name), and whether it also takes ``**kwargs``."""
    params = inspect.signature(loader).parameters  # follows functools.wraps (__wrapped__)
    named = {n: p for n, p in params.items()
             if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)}
    return named, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def load_source(name: str, **kwargs: Any) -> SourceSplits:
    """Call the loader registered as ``name``; an argument it does not declare is a :class:`ConfigError`."""
    loader = get_loader(name)
    declared, takes_any = loader_parameters(loader)
    unknown = sorted(set(kwargs) - set(declared))
    if unknown and not takes_any:
        raise ConfigError(f"data.source={name!r} does not take {unknown}; it accepts {sorted(declared)}")
    return loader(**kwargs)


def parse_image_size(image_size: Any) -> tuple[int, int] | None:
    """``data.image_size``: ``None`` (the source's own size), a positive int (a square) or ``[H, W]``."""
    def is_positive_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0

    if image_size is None:
        return None
    if is_positive_int(image_size):
        return int(image_size), int(image_size)
    if (isinstance(image_size, SequenceABC) and not isinstance(image_size, str) and len(image_size) == 2
            and all(is_positive_int(v) for v in image_size)):
        return int(image_size[0]), int(image_size[1])
    raise ConfigError(f"data.image_size={_show(image_size)} is invalid: give [H, W] with two positive integers "
                      "(e.g. data.image_size=[32,32]), or null to keep the source's own size")


def check_channels(channels: Any) -> int:
    """``data.channels``: 1 (grayscale) or 3 (RGB)."""
    if isinstance(channels, bool) or not isinstance(channels, (int, np.integer)) or channels not in (1, 3):
        raise ConfigError(f"data.channels={_show(channels)} is invalid: use data.channels=1 (grayscale) "
                          "or data.channels=3 (RGB)")
    return int(channels)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, SequenceABC) and not isinstance(value, str) else repr(value)


def _to_channels(images: np.ndarray, channels: int) -> np.ndarray:
    """(N, H, W) or (N, H, W, C) uint8 → (N, channels, H, W)."""
    channels = check_channels(channels)
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


def _pixels(images: np.ndarray, channels: int, image_size: Any) -> np.ndarray:
    """Arrays in memory → ``(N, channels, *image_size)``: channels converted first, then resized (as decoding does)."""
    size = parse_image_size(image_size)
    return resize_images(_to_channels(images, channels), size)


def _root(root: str | None, source: str, example: str) -> Path:
    if root is None:
        raise ConfigError(f"data.source={source} needs data.root (the folder holding the data, e.g. "
                          f"data.root={example})")
    return Path(root).expanduser()


@register_source("digits")
def load_digits(channels: int = 1, image_size: Any = None, test_fraction: float = 0.2,
                seed: int = 0) -> SourceSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images): works anywhere, offline, in seconds (no disk cache)."""
    channels, size = check_channels(channels), parse_image_size(image_size)
    from sklearn.datasets import load_digits as sk_digits

    from lit_vision.data.split import stratified_split

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    labels = bunch.target.astype(np.int64)
    arrays = ImageArrays(_pixels(images, channels, size), labels, [str(c) for c in range(10)])
    train_idx, test_idx = stratified_split(labels, test_fraction, seed, key="data.source_args.test_fraction")
    # ids=None: each split's rows are numbered 0..N-1 in it (``train/5``, ``test/5``), not by the bundle's rows
    return SourceSplits(train=replace(arrays.subset(train_idx), ids=None),
                        test=replace(arrays.subset(test_idx), ids=None))


def _torchvision(cls_name: str, root: Path, download: bool, channels: int, image_size: Any) -> SourceSplits:
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    splits = {}
    for split, train in (("train", True), ("test", False)):
        ds = cls(root=str(root), train=train, download=download)
        data = ds.data.numpy() if hasattr(ds.data, "numpy") else np.asarray(ds.data)
        targets = np.asarray(ds.targets, dtype=np.int64)
        splits[split] = ImageArrays(_pixels(data, channels, image_size), targets, list(ds.classes))
    return SourceSplits(**splits)


def _missing(name: str, root: Path, layouts: str, example: str) -> DataNotFoundError:
    return DataNotFoundError(
        f"No {name} data at data.root={root}. Expected {layouts}.\n"
        f"Fix: point data.root at a local copy (e.g. data.root={example}), set LIT_VISION_DATA_DIR, "
        "or pass data.download=true on a machine with internet access.")


def _torchvision_idx(name: str, cls_name: str, source: str, root: str | None, download: bool, channels: int,
                     image_size: Any) -> SourceSplits:
    channels, size = check_channels(channels), parse_image_size(image_size)  # bad values fail before any read
    path = _root(root, source, "../shared/datasets")
    raw = path / cls_name / "raw"
    alt = path / "raw"
    if not raw.is_dir() and alt.is_dir():
        path = path.parent  # data.root pointed at <root>/<Name> itself
    elif not raw.is_dir() and not download:
        raise _missing(name, path, f"{path}/{cls_name}/raw/*-ubyte (torchvision layout)", "../shared/datasets")
    try:
        return _torchvision(cls_name, path, download, channels, size)
    except RuntimeError as exc:
        raise _missing(name, path, f"{path}/{cls_name}/raw/*-ubyte ({exc})", "../shared/datasets") from exc


@register_source("mnist")
def load_mnist(root: str | None = None, download: bool = False, channels: int = 1,
               image_size: Any = None) -> SourceSplits:
    """MNIST (28x28) in torchvision's layout ``<root>/MNIST/raw/*-ubyte``; no disk cache (parsed in a second)."""
    return _torchvision_idx("MNIST", "MNIST", "mnist", root, download, channels, image_size)


@register_source("fashion_mnist")
def load_fashion_mnist(root: str | None = None, download: bool = False, channels: int = 1,
                       image_size: Any = None) -> SourceSplits:
    """Fashion-MNIST (28x28) in torchvision's layout ``<root>/FashionMNIST/raw/*-ubyte``; no disk cache."""
    return _torchvision_idx("Fashion-MNIST", "FashionMNIST", "fashion_mnist", root, download, channels, image_size)


def _cached_folder(root: Path, channels: int, size: tuple[int, int] | None, cache_dir: str | None,
                   skip_corrupt: bool, class_names: Sequence[str] | None = None, label: str = "") -> ImageArrays:
    found = list_class_folders(root)
    names = list(class_names) if class_names is not None else found
    extra = sorted(set(found) - set(names))
    if extra:  # never drop a folder of images silently
        raise DataNotFoundError(f"{root} has class folders {extra} that the other folders (or "
                                f"source_args.class_names) do not have; every folder must share the classes {names} "
                                "(to train on a subset, keep the folders and set data.mapping.classes)")
    paths, labels = list_files(root, names)
    key = {"kind": "folder", "root": str(root.resolve()), "channels": channels, "size": size,
           "classes": names, "files": fingerprint(paths), "skip_corrupt": skip_corrupt}
    name = f"{root.name}-{label or 'folder'}"
    if not cache_exists(cache_dir, name, key):  # a cache hit costs nothing more
        check_cache_budget(root, len(paths), channels, size, cache_dir, paths[0] if paths else None)
    return cached(cache_dir, name, key,
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
def load_cifar10(root: str | None = None, download: bool = False, channels: int = 3, image_size: Any = None,
                 cache_dir: str | None = None, skip_corrupt: bool = False) -> SourceSplits:
    """CIFAR-10 from torchvision's ``cifar-10-batches-py/`` or from an image-folder export.

    The layout is detected: ``<root>/cifar-10-batches-py`` (or ``root`` being that folder) → torchvision (read
    in memory, no disk cache); ``<root>/train/<class>/`` → image folders (decoded once into ``cache_dir``).
    """
    channels, size = check_channels(channels), parse_image_size(image_size)
    path = _root(root, "cifar10", "../shared/datasets/cifar10-jpeg")
    if path.name == "cifar-10-batches-py" and path.is_dir():
        path = path.parent
    if download and not (path / "cifar-10-batches-py").is_dir() and not (path / "train").is_dir():
        import torchvision.datasets as tvd

        tvd.CIFAR10(root=str(path), train=True, download=True)  # fetches and verifies the archive
    if (path / "cifar-10-batches-py").is_dir():
        return read_cifar_batches(path / "cifar-10-batches-py", channels, size)
    if (path / "train").is_dir():
        return _folder_splits(path, channels, size, cache_dir, skip_corrupt)
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


def read_cifar_batches(folder: Path, channels: int = 3, image_size: Any = None) -> SourceSplits:
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
        return ImageArrays(_pixels(data.transpose(0, 2, 3, 1), channels, image_size), labels, names)

    train = read([folder / f"data_batch_{i}" for i in range(1, 6)])
    return SourceSplits(train=train, test=read([folder / "test_batch"]))


@register_source("fer2013")
def load_fer2013(root: str | None = None, channels: int = 1, image_size: Any = None, cache_dir: str | None = None,
                 skip_corrupt: bool = False) -> SourceSplits:
    """FER2013 in the Kaggle layout: ``<root>/train/<emotion>/*.jpg`` and ``<root>/test/<emotion>/*.jpg`` (48x48)."""
    channels, size = check_channels(channels), parse_image_size(image_size)
    path = _root(root, "fer2013", "../shared/datasets/fer2013")
    if not (path / "train").is_dir():
        raise _missing("FER2013", path, f"{path}/train/<emotion>/*.jpg and {path}/test/<emotion>/*.jpg "
                       "(Kaggle msambare/fer2013 layout)", "../shared/datasets/fer2013")
    return _folder_splits(path, channels, size, cache_dir, skip_corrupt)


@register_source("image_folder")
def load_folders(train_dirs: Sequence[str] | str | None = None, val_dir: str | None = None,
                 test_dir: str | None = None, root: str | None = None, channels: int = 3,
                 image_size: Any = None, cache_dir: str | None = None, skip_corrupt: bool = False,
                 class_names: Sequence[str] | None = None) -> SourceSplits:
    """Any folders of class sub-folders: several train dirs are concatenated; val and test are optional.

    Either ``root`` (``<root>/train``, optional ``<root>/val`` and ``<root>/test``) or ``train_dirs`` with optional
    ``val_dir``/``test_dir``; both at once is refused (one of them would be ignored).
    """
    channels, size = check_channels(channels), parse_image_size(image_size)
    layout = split_dirs(root, train_dirs, val_dir, test_dir)
    if not train_dirs:
        return _folder_splits(Path(root).expanduser(), channels, size, cache_dir, skip_corrupt, class_names)
    names = list(class_names) if class_names else list_class_folders(layout["train"][0])
    parts = [_cached_folder(d, channels, size, cache_dir, skip_corrupt, names, "train") for d in layout["train"]]
    train = parts[0] if len(parts) == 1 else ImageArrays(
        np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]), names,
        sum((p.sources for p in parts), []))
    out = {"train": train}
    for split in ("val", "test"):
        if split in layout:
            out[split] = _cached_folder(layout[split][0], channels, size, cache_dir, skip_corrupt, names, split)
    return SourceSplits(**out)


__all__ = ["SOURCES", "register_source", "load_source", "get_loader", "loader_parameters", "parse_image_size",
           "check_channels", "load_image_folders"]
