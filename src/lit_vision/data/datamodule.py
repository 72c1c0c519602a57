"""One LightningDataModule for every source: source → target mapping → split → in-memory batches."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any, Mapping, Sequence

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.augment import AugmentConfig, augment_batch
from lit_vision.data.mapping import LabelMapping, apply_mapping, class_weights
from lit_vision.data.sources import load_source
from lit_vision.data.split import stratified_split
from lit_vision.errors import ConfigError

log = logging.getLogger(__name__)


class ArrayDataset(Dataset):
    """Serves whole batches from uint8 arrays: ``__getitems__`` makes one slice per batch, not one per image."""

    def __init__(self, arrays: ImageArrays) -> None:
        self.images = arrays.images
        self.labels = torch.from_numpy(np.asarray(arrays.labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(np.array(self.images[i])), self.labels[i]

    def __getitems__(self, index: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(index, dtype=np.int64)
        return torch.from_numpy(np.ascontiguousarray(self.images[idx])), self.labels[idx]


def keep_batch(batch: Any) -> Any:
    """collate_fn for :class:`ArrayDataset`: the batch is already stacked."""
    return batch


class VisionDataModule(L.LightningDataModule):
    """Loads a source, maps its labels, splits validation from train and serves uint8 batches.

    Batches are converted to float in [0, 1] and augmented on the device the model is on
    (``on_after_batch_transfer``); normalisation belongs to the model so checkpoints carry it.
    """

    def __init__(self, source: str, root: str | None = None, download: bool = False, channels: int = 3,
                 image_size: int | Sequence[int] | None = None, mapping: Mapping[str, Any] | None = None,
                 val_fraction: float = 0.1, use_source_val: bool = True, batch_size: int = 128,
                 eval_batch_size: int | None = None, num_workers: int = 0, seed: int = 42,
                 augment: Mapping[str, Any] | None = None, class_weighting: bool = False,
                 cache_dir: str | None = None, skip_corrupt: bool = False,
                 source_args: Mapping[str, Any] | None = None, name: str | None = None) -> None:
        super().__init__()
        if int(batch_size) < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be a positive integer")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be strictly between 0 and 1")
        self.source = source
        self.name = name or source
        self.source_kwargs = dict(root=root, download=download, channels=channels, image_size=image_size,
                                  cache_dir=cache_dir, skip_corrupt=skip_corrupt, seed=seed,
                                  **dict(source_args or {}))
        self.mapping = LabelMapping(**dict(mapping or {}))
        self.val_fraction = float(val_fraction)
        self.use_source_val = use_source_val
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = num_workers
        self.seed = int(seed)
        self.augment = AugmentConfig(**dict(augment or {}))
        self.class_weighting = class_weighting
        self._loaded: SourceSplits | None = None
        self.train_set: ImageArrays | None = None
        self.val_set: ImageArrays | None = None
        self.test_set: ImageArrays | None = None

    # --- loading -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        """Decode and cache once (rank 0); ``setup`` then memory-maps the cache on every rank.

        The loaded splits are kept so ``setup`` in the same process does not read the source a second time
        (sources without a disk cache, such as torchvision's MNIST/CIFAR files, would otherwise be parsed twice)."""
        self._loaded = load_source(self.source, **self.source_kwargs)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        splits: SourceSplits = self._loaded or load_source(self.source, **self.source_kwargs)
        self._loaded = None
        train = apply_mapping(splits.train, self.mapping, "train", self.seed)
        if splits.val is not None and self.use_source_val:
            val = apply_mapping(splits.val, self.mapping, "val", self.seed)
        else:
            train_idx, val_idx = stratified_split(train.labels, self.val_fraction, self.seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        test = apply_mapping(splits.test, self.mapping, "test", self.seed) if splits.test is not None else None
        self.train_set, self.val_set, self.test_set = train, val, test
        log.info("data %s: train %s | val %s | test %s", self.name, train.class_counts(), val.class_counts(),
                 test.class_counts() if test is not None else "none")

    # --- what the model needs to know --------------------------------------------------------
    def _require(self) -> ImageArrays:
        if self.train_set is None:
            raise RuntimeError("call setup() before asking the data module about its data")
        return self.train_set

    @property
    def class_names(self) -> list[str]:
        return list(self._require().class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self._require().channels

    @property
    def image_size(self) -> list[int]:
        return list(self._require().image_size)

    def class_weights(self) -> list[float] | None:
        if not self.class_weighting:
            return None
        return class_weights(self._require().labels, self.num_classes)

    def pixel_stats(self, max_images: int = 10_000) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] units, from (a seeded sample of) the training split."""
        train = self._require()
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(len(train), size=min(max_images, len(train)), replace=False))
        x = torch.from_numpy(np.ascontiguousarray(train.images[idx])).float().div_(255)
        mean = x.mean(dim=(0, 2, 3))
        std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
        return mean.tolist(), std.tolist()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "class_names": self.class_names,
                "channels": self.channels, "image_size": self.image_size,
                "augment": asdict(self.augment),
                "counts": {s: a.class_counts() for s, a in
                           (("train", self.train_set), ("val", self.val_set), ("test", self.test_set))
                           if a is not None}}

    # --- loaders -------------------------------------------------------------------------------
    def _loader(self, arrays: ImageArrays | None, shuffle: bool, batch_size: int) -> DataLoader:
        if arrays is None:
            raise ConfigError(f"data {self.name} has no test split; point data.root at data with a test/ folder")
        return DataLoader(ArrayDataset(arrays), batch_size=batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, collate_fn=keep_batch,
                          persistent_workers=self.num_workers > 0, drop_last=False)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training and self.augment.enabled:
            x = augment_batch(x, self.augment)
        return x, y
