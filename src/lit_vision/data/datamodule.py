"""One LightningDataModule for every source: source → target mapping → split → in-memory batches."""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lit_vision.checks import flag, fraction, non_negative_int, positive_int, seed_value
from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.augment import AugmentConfig, to_float, transfer_batch
from lit_vision.data.device_batches import DeviceBatches, fits_on
from lit_vision.data.epoch_order import EpochOrder, ResumableDataLoader
from lit_vision.data.exclude import ExcludeList, apply_exclude, read_exclude
from lit_vision.data.loader_state import TrainLoaderPosition
from lit_vision.data.mapping import LabelMapping, apply_mapping, class_weights
from lit_vision.data.sources import check_channels, get_loader, load_source, loader_parameters, parse_image_size
from lit_vision.data.split import stratified_split
from lit_vision.errors import ConfigError

log = logging.getLogger(__name__)


def check_by_construction(cls: type, data: Mapping[str, Any], what: str) -> None:
    """A data module's ``check_config``: it is built from the resolved ``data`` config, which reads nothing, and its
    ``_check()`` run; a key its constructor does not take (added with ``+data.<key>=...``) is named."""
    args = {k: v for k, v in data.items() if k != "_target_"}
    try:
        module = cls(**args)
    except TypeError as exc:
        known = sorted(p for p in inspect.signature(cls.__init__).parameters if p != "self")
        unknown = sorted(set(args) - set(known))
        raise ConfigError(f"data.{unknown[0] if unknown else ''} is not {what} ({exc}); the settings are "
                          f"{known}") from exc
    module._check()


class ArrayDataset(Dataset):
    """Serves whole batches from uint8 arrays: ``__getitems__`` makes one slice per batch, not one per image."""

    def __init__(self, arrays: ImageArrays) -> None:
        self.images = arrays.images
        self.labels = torch.from_numpy(np.array(arrays.labels, dtype=np.int64))  # a copy: may be read-only

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


#: The data-module arguments (``data.<key>``: root, download, channels, image_size, cache_dir, skip_corrupt, seed)
#: go to a loader only if it declares them. If it does not declare one of these, any value but the one meaning
#: "not set" is refused (ConfigError naming ``data.<key>``), never ignored. The other three need no refusal:
#: ``channels`` is checked on the loaded arrays, ``cache_dir`` is of no use to a source without a disk cache, and
#: ``seed`` also seeds the module's own split.
_REFUSED_UNLESS_UNSET: dict[str, Any] = {"root": None, "download": False, "image_size": None, "skip_corrupt": False}


class VisionDataModule(TrainLoaderPosition, L.LightningDataModule):
    """Loads a source, maps its labels, splits validation from train and serves uint8 batches.

    Batches are converted to float in [0, 1] and augmented on the device the model is on
    (``on_after_batch_transfer``); normalisation belongs to the model so checkpoints carry it.

    Defaults live in the data configs (``conf/``); the few defaults here agree with them, and ``eval_batch_size``
    has none (the configs state it). Arguments are checked (:class:`ConfigError` naming ``data.<key>``) on the first
    ``prepare_data``/``setup``, before any data is read; not in ``__init__``, because Hydra would wrap the error.

    The source is read once per process: ``prepare_data`` loads it on local rank 0 and ``setup`` keeps the result;
    both are no-ops once the data is loaded or set up. Other DDP ranks skip ``prepare_data`` and load in
    ``setup``: folder sources memory-map the disk cache rank 0 wrote (waiting on its lock if it is still being
    written), sources without a disk cache (digits, MNIST, CIFAR-10 batches) are read by the rank itself.

    ``data.exclude`` (:mod:`lit_vision.data.exclude`) is read and checked with the other arguments; the images it
    lists are left out of the loaded splits before the labels are mapped and validation is split from train.
    """

    def __init__(self, source: str, root: str | None = None, download: bool = False, channels: int = 3,
                 image_size: int | Sequence[int] | None = None, mapping: Mapping[str, Any] | None = None,
                 val_fraction: float = 0.1, use_source_val: bool = True, batch_size: int = 128, *,
                 eval_batch_size: int, num_workers: int = 0, seed: int = 42,
                 augment: Mapping[str, Any] | None = None, class_weighting: bool = False,
                 cache_dir: str | None = None, skip_corrupt: bool = False,
                 source_args: Mapping[str, Any] | None = None, name: str | None = None,
                 on_device: bool | str = "auto", exclude: str | Sequence[str] | None = None) -> None:
        super().__init__()
        self.source = source
        self.name = name or source
        self._given = dict(root=root, download=download, channels=channels, image_size=image_size,
                           cache_dir=cache_dir, skip_corrupt=skip_corrupt, seed=seed)
        self.source_args = dict(source_args or {})
        self.mapping = LabelMapping.from_mapping(dict(mapping or {}))
        self.val_fraction = val_fraction
        self.use_source_val = use_source_val
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.augment = AugmentConfig.from_mapping(dict(augment or {}))
        self.class_weighting = class_weighting
        if on_device not in ("auto", True, False):
            raise ConfigError(f"data.on_device={on_device!r}: use auto, true or false")
        self.on_device = on_device
        self.exclude = exclude  # images left out (data/exclude.py): read in _check(), applied in setup()
        self.excluded: ExcludeList | None = None
        self.batches_per_step = 1  # consecutive training batches served as one (group_train_batches)
        self.source_kwargs: dict[str, Any] | None = None  # what the loader is called with, after _check()
        self._loaded: SourceSplits | None = None
        self.train_set: ImageArrays | None = None
        self.val_set: ImageArrays | None = None
        self.test_set: ImageArrays | None = None

    # --- checking the arguments ------------------------------------------------------------------
    @classmethod
    def check_config(cls, data: Mapping[str, Any]) -> None:
        """Every ``data.<key>`` checked before any data is read (:func:`lit_vision.config.validate_config`)."""
        check_by_construction(cls, data, "a data setting")

    def _check(self) -> dict[str, Any]:
        """Validate the arguments and work out the loader's keyword arguments (once)."""
        if self.source_kwargs is not None:
            return self.source_kwargs
        self.batch_size = positive_int(self.batch_size, "data.batch_size")
        self.eval_batch_size = positive_int(self.eval_batch_size, "data.eval_batch_size")
        self.val_fraction = fraction(self.val_fraction, "data.val_fraction")
        self.num_workers = non_negative_int(self.num_workers, "data.num_workers")
        self.use_source_val = flag(self.use_source_val, "data.use_source_val")
        self.class_weighting = flag(self.class_weighting, "data.class_weighting")
        self.seed = seed_value(self.seed, "data.seed")
        check_channels(self._given["channels"])
        parse_image_size(self._given["image_size"])
        self.excluded = read_exclude(self.exclude) if self.exclude is not None else None
        loader = get_loader(self.source)
        declared, takes_any = loader_parameters(loader)
        own_args = sorted(set(declared) - set(self._given))
        kwargs: dict[str, Any] = {}
        for key, value in self._given.items():
            if takes_any or key in declared:
                kwargs[key] = value
            elif key in _REFUSED_UNLESS_UNSET and value != _REFUSED_UNLESS_UNSET[key]:
                unset = _REFUSED_UNLESS_UNSET[key]
                raise ConfigError(
                    f"data.{key}={value!r} is not used by data.source={self.source}; remove it (data.{key}="
                    f"{'null' if unset is None else str(unset).lower()}) or pick a source that uses it")
        for key, value in self.source_args.items():
            if key in self._given:
                raise ConfigError(f"data.source_args.{key}: {key} is a data-module setting; set data.{key} instead")
            if not takes_any and key not in declared:
                accepted = (f"the accepted source_args are {own_args}" if own_args else
                            "it takes no source_args (data.source_args={})")
                raise ConfigError(f"data.source_args.{key} is not an argument of data.source={self.source}; "
                                  f"{accepted}. Fix the name or remove it.")
            kwargs[key] = value
        missing = [k for k, p in declared.items() if p.default is p.empty and k not in kwargs]
        if missing:
            raise ConfigError(f"data.source={self.source} needs data.source_args.{missing[0]} (required: {missing})")
        self.source_kwargs = kwargs
        return kwargs

    def _check_loaded(self, splits: SourceSplits) -> SourceSplits:
        """A loader that did not honour data.channels / data.image_size is an error, never a silent mismatch."""
        channels = int(self._given["channels"])
        size = parse_image_size(self._given["image_size"])
        for split, arrays in (("train", splits.train), ("val", splits.val), ("test", splits.test)):
            if arrays is None:
                continue
            if arrays.channels != channels:
                raise ConfigError(f"data.source={self.source} gave {arrays.channels}-channel {split} images, but "
                                  f"data.channels={channels}; set data.channels={arrays.channels}")
            if size is not None and arrays.image_size != size:
                raise ConfigError(f"data.source={self.source} gave {list(arrays.image_size)} {split} images, but "
                                  f"data.image_size={list(size)}; set data.image_size={list(arrays.image_size)} "
                                  "or null")
        return splits

    # --- loading -------------------------------------------------------------------------------
    def _local_rank(self) -> int:
        """The trainer's local rank; before a Trainer exists, the launcher's (LOCAL_RANK, SLURM_LOCALID)."""
        trainer = self.trainer
        if trainer is not None:
            return int(trainer.local_rank)
        for var in ("LOCAL_RANK", "SLURM_LOCALID"):
            value = os.environ.get(var, "")
            if value.isdigit():
                return int(value)
        return 0

    def _load(self) -> SourceSplits:
        return self._check_loaded(load_source(self.source, **self._check()))

    def prepare_data(self) -> None:
        """Decode (and write the disk cache) once, on local rank 0; a no-op once the data is loaded or set up.

        Lightning calls this before each fit/validate/test (on local rank 0 only) and ``build_datamodule`` calls
        it before the Trainer exists (on every rank): only the first call on local rank 0 reads the source."""
        self._check()
        if self._loaded is not None or self.train_set is not None or self._local_rank() != 0:
            return
        self._loaded = self._load()

    def setup(self, stage: str | None = None) -> None:
        """Leave out ``data.exclude``, map labels and split, once; loads the source here only if ``prepare_data``
        did not (other ranks)."""
        self._check()
        if self.train_set is not None:
            return
        mapped = self._mapped(self._loaded if self._loaded is not None else self._load())
        self._loaded = None
        train = mapped["train"]
        if "val" in mapped:
            val = mapped["val"]
        else:
            train_idx, val_idx = stratified_split(train.labels, self.val_fraction, self.seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        test = mapped.get("test")
        self.train_set, self.val_set, self.test_set = train, val, test
        log.info("data %s: train %s | val %s | test %s", self.name, train.class_counts(), val.class_counts(),
                 test.class_counts() if test is not None else "none")

    def _mapped(self, splits: SourceSplits) -> dict[str, ImageArrays]:
        """The source's splits without ``data.exclude`` (left out of the source's own rows, by path or
        ``<split>/<index>``), labels mapped; val only when it is used (``use_source_val``); train not split yet."""
        if self.excluded is not None:
            splits, counts = apply_exclude(splits, self.excluded)
            log.info("data.exclude: left out %s", counts)
        out = {"train": apply_mapping(splits.train, self.mapping, "train", self.seed)}
        if splits.val is not None and self.use_source_val:
            out["val"] = apply_mapping(splits.val, self.mapping, "val", self.seed)
        if splits.test is not None:
            out["test"] = apply_mapping(splits.test, self.mapping, "test", self.seed)
        return out

    def source_splits(self) -> dict[str, ImageArrays]:
        """The splits as the source has them, ``data.exclude`` left out and labels mapped, train not split for
        validation (``lit-vision audit`` reads these; their rows' names: :mod:`lit_vision.data.items`). Uses the
        source ``prepare_data`` loaded, else reads it; :meth:`setup` is not needed and not affected."""
        self._check()
        return self._mapped(self._loaded if self._loaded is not None else self._load())

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

    def train_sample(self, max_images: int) -> torch.Tensor:
        """A seeded sample of at most ``max_images`` training images, uint8 (N, C, H, W), in the split's order."""
        train = self._require()
        rng = np.random.default_rng(self.seed)
        idx = np.sort(rng.choice(len(train), size=min(max_images, len(train)), replace=False))
        return torch.from_numpy(np.ascontiguousarray(train.images[idx]))

    def pixel_stats(self, max_images: int = 10_000) -> tuple[list[float], list[float]]:
        """Per-channel mean and std in [0, 1] units, from (a seeded sample of) the training split."""
        x = to_float(self.train_sample(max_images))
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
    def _device(self) -> torch.device | None:
        """The device to keep the splits on (``data.on_device``), or None for host batches through a DataLoader."""
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.world_size > 1 or self.on_device is False:
            return None
        device = trainer.strategy.root_device
        if self.on_device is True:
            return device
        splits = [a for a in (self.train_set, self.val_set, self.test_set) if a is not None]
        return device if fits_on(device, splits) else None

    def _loader(self, arrays: ImageArrays | None, shuffle: bool, batch_size: int) -> DataLoader | DeviceBatches:
        if arrays is None:
            raise ConfigError(f"data {self.name} has no test split; point data.root at data with a test/ folder")
        device = self._device()
        if device is not None:
            return DeviceBatches(arrays, batch_size, shuffle, device, self.seed)
        trainer = getattr(self, "trainer", None)
        pin = trainer is not None and trainer.strategy.root_device.type == "cuda"  # async host → GPU copies
        kwargs: dict[str, Any] = dict(batch_size=batch_size, num_workers=self.num_workers, collate_fn=keep_batch,
                                      pin_memory=pin, persistent_workers=self.num_workers > 0, drop_last=False)
        if not shuffle:
            return DataLoader(ArrayDataset(arrays), shuffle=False, **kwargs)
        # the training order: seeded per epoch, this rank's share under DDP (Lightning keeps a DistributedSampler
        # it is given), and resumable mid-epoch (data/epoch_order.py)
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        order = EpochOrder(len(arrays), self.seed, shuffle=True, num_replicas=world, rank=rank)
        return ResumableDataLoader(ArrayDataset(arrays), sampler=order, **kwargs)

    def group_train_batches(self, steps: int) -> None:
        """Serve ``steps`` consecutive training batches as one (``steps_per_execution``): the same images in the
        same order as ``steps`` separate batches, for a model that splits them again
        (:meth:`~lit_vision.training.classifier.ImageClassifier.set_steps_per_execution`)."""
        self.batches_per_step = positive_int(steps, "steps_per_execution")

    def train_dataloader(self) -> ResumableDataLoader | DeviceBatches:
        return self.track_train_loader(self._loader(self.train_set, True, self.batch_size * self.batches_per_step))

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.val_set, False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader(self.test_set, False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader | DeviceBatches:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        return transfer_batch(batch, self.augment, trainer is not None and trainer.training)
