"""In-memory image arrays: the one currency every data source converts into."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageArrays:
    """Images as uint8 ``(N, C, H, W)`` (possibly a read-only memmap) with int64 labels.

    ``class_names[i]`` is the name of label ``i``; names travel with the data to reports. ``sources`` holds each
    row's file path (folder sources; empty for sources read from arrays). ``ids`` holds each row's index in its
    source split as the loader returned it (``np.arange(N)`` there), kept through label mapping, balancing and the
    val split carved from train: with the split's name it identifies an image (:mod:`lit_vision.data.items`).
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    sources: list[str] = field(default_factory=list)
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 4:
            raise ValueError(f"images must be (N, C, H, W), got shape {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.ids is None:
            self.ids = np.arange(len(self.labels), dtype=np.int64)
        elif len(self.ids) != len(self.labels):
            raise ValueError(f"{len(self.labels)} images but {len(self.ids)} ids")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, index: np.ndarray) -> ImageArrays:
        """Rows ``index`` (sorted, so a memmap is read front to back)."""
        index = np.sort(np.asarray(index, dtype=np.int64))
        sources = [self.sources[i] for i in index] if self.sources else []
        assert self.ids is not None  # set in __post_init__
        return ImageArrays(self.images[index], self.labels[index], list(self.class_names), sources, self.ids[index])

    def with_labels(self, labels: np.ndarray, class_names: list[str]) -> ImageArrays:
        return ImageArrays(self.images, labels.astype(np.int64), list(class_names), self.sources, self.ids)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.class_names))
        return {name: int(c) for name, c in zip(self.class_names, counts)}


@dataclass
class SourceSplits:
    """What a source provides: always train; val and test when the source has them."""

    train: ImageArrays
    val: ImageArrays | None = None
    test: ImageArrays | None = None
