"""``data=shards``: train, validate and test from a shard directory (:mod:`lit_vision.data.shards`), streamed.

Training reads with LitData's ``StreamingDataset``/``StreamingDataLoader``: DataLoader worker processes read whole
chunks, decode the JPEGs and take a RandomResizedCrop at ``data.image_size``; DDP ranks and workers read disjoint
chunks, the same number of samples each (``drop_last`` under DDP: no rank waits at the epoch's end for another), and
the loader's ``state_dict`` resumes mid-epoch. Memory stays bounded whatever the size of the shard set: a worker
holds the chunk it reads, not the dataset. Each sample's crop is drawn from a generator seeded with (seed, epoch,
sample), so a resumed epoch crops exactly as the uninterrupted one, whatever the workers.

Validation and test read the samples in order (``sources.txt``'s order, which the reports name) through a map-style
view of the same shards, resized on the shorter side and centre-cropped. Flips, TrivialAugment and random erasing
(``data.augment``) and mixup/cutmix (``model.mix``) run on the model's device, as for the in-memory data.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import lightning as L
import numpy as np
import torch
from litdata import StreamingDataLoader, StreamingDataset
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as F

from lit_vision.checks import flag, non_negative_int, positive_int, seed_value
from lit_vision.data.augment import AugmentConfig, to_float, transfer_batch
from lit_vision.data.batch_slots import BatchSlots, SlotCollate, taken
from lit_vision.data.datamodule import check_by_construction
from lit_vision.data.loader_state import TrainLoaderPosition
from lit_vision.data.mapping import class_weights
from lit_vision.data.shards import ShardsCorruptError, ShardSet, open_shards
from lit_vision.data.sources import parse_image_size
from lit_vision.errors import ConfigError

log = logging.getLogger(__name__)
# LitData logs its cache sizing and read mode at INFO on every epoch's loader; its warnings still show
logging.getLogger("litdata").setLevel(logging.WARNING)
# torchvision 0.29 deprecates its decoders for TorchCodec's; decode_jpeg still decodes the stored JPEGs 1.6x faster
# than PIL here (0.26 vs 0.42 ms at 256 px), and would warn once per image
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


# --- per-sample transforms (in the DataLoader workers) -------------------------------------------------------------
def decode(data: bytes, channels: int) -> torch.Tensor:
    """A stored JPEG → uint8 ``(C, H, W)``."""
    mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
    return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=mode)


def crop_box(height: int, width: int, scale: Sequence[float], ratio: Sequence[float],
             rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (top, left, height, width), torchvision's algorithm with ``rng``'s draws: a random
    area fraction in ``scale`` and aspect ratio (log-uniform) in ``ratio``, 10 tries, else the centre crop."""
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = float(np.exp(rng.uniform(log_ratio[0], log_ratio[1])))
        w, h = int(round(np.sqrt(target * aspect))), int(round(np.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def random_resized_crop(image: torch.Tensor, size: Sequence[int], scale: Sequence[float], ratio: Sequence[float],
                        rng: np.random.Generator) -> torch.Tensor:
    top, left, h, w = crop_box(image.shape[-2], image.shape[-1], scale, ratio, rng)
    return F.resized_crop(image, top, left, h, w, list(size), antialias=True)


def resize_centre_crop(image: torch.Tensor, size: Sequence[int], crop_fraction: float) -> torch.Tensor:
    """Evaluation: the shorter side resized to ``min(size) / crop_fraction``, then the centre ``size``."""
    shorter = int(round(min(size) / crop_fraction))
    return F.center_crop(F.resize(image, shorter, antialias=True), list(size))


@dataclass(frozen=True)
class PhotoTransform:
    """What a worker does to a stored sample: decode, then crop for training or resize + centre-crop for eval."""

    channels: int
    image_size: tuple[int, int]
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    eval_crop_fraction: float
    seed: int

    def train(self, item: Mapping[str, Any], epoch: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, epoch, int(item["index"])])
        return random_resized_crop(decode(item["image"], self.channels), self.image_size, self.crop_scale,
                                   self.crop_ratio, rng)

    def eval(self, item: Mapping[str, Any]) -> torch.Tensor:
        return resize_centre_crop(decode(item["image"], self.channels), self.image_size, self.eval_crop_fraction)


def _read_error(shards_root: str, split: str, chunk_index: int, position: int, exc: Exception) -> ShardsCorruptError:
    """A chunk that fails to read or decode: name the chunk and the samples lost with it."""
    shards = ShardSet.unchecked(shards_root)
    filename, first, last = shards.chunk_of(split, chunk_index)
    return ShardsCorruptError(shards.lost_samples(split, filename, first, last,
                                                  f"sample {position}: {type(exc).__name__}: {exc}"))


class TrainShards(StreamingDataset):
    """The training split as LitData streams it, each sample decoded and randomly cropped in the worker."""

    def __init__(self, shards: ShardSet, transform: PhotoTransform, drop_last: bool) -> None:
        super().__init__(str(shards.split_dir("train")), shuffle=True, seed=transform.seed, drop_last=drop_last)
        self.photo = transform
        self.shards_root = str(shards.root)

    def __getitem__(self, index: Any) -> tuple[torch.Tensor, int]:
        try:
            item = super().__getitem__(index)
            return self.photo.train(item, self.current_epoch), int(item["label"])
        except Exception as exc:  # any failure to read or decode a stored sample is a damaged chunk
            chunk = getattr(index, "chunk_index", None)
            position = getattr(index, "index", index)
            if chunk is None:
                raise
            raise _read_error(self.shards_root, "train", chunk, position, exc) from exc


def start_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn`` of the shards loaders.

    * A worker leaves SIGTERM to its training process. SLURM sends SIGTERM to every process of a job it requeues; a
      worker killed by it makes the training process fail ("DataLoader worker is killed by signal") and record the
      requeued run as failed, while the training process itself waits for the requeue. A worker still ends with its
      training process (PyTorch's workers watch their parent).
    * A worker never garbage-collects what it inherited from the training process (``gc.freeze``): a forked copy of
      a library object whose threads stayed in the parent can hang in its destructor (seen: an onnxruntime session
      left in a reference cycle, collected in a worker, waiting forever in ``pthread_cond_destroy``). Its own
      objects are collected as usual, and the inherited pages stay shared instead of being copied.
    """
    del worker_id
    gc.freeze()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ShardsLoader(StreamingDataLoader):
    """LitData's loader, resumed in step with Lightning.

    * LitData counts epochs itself (they seed its shuffle and our crops) and Lightning cannot set them (it sets a
      sampler's epoch; this loader has none). A run resumed from a checkpoint at an epoch's end gets the saved
      count through :meth:`continue_after`, so it reads the next epoch's order, not the first epoch's again.
    * LitData leaves "resuming" on until an epoch's iterator runs to its end, but Lightning stops reading at the
      loader's known length: the epoch after a resumed one would replay the stale position (and fail, "num_samples_
      yielded ... greater than the dataset length"). A loaded position serves the first epoch iterated after it
      was loaded, and only that one.
    * Worker processes write batches into shared-memory slots allocated once per epoch (:mod:`lit_vision.data.
      batch_slots`): a batch in new shared memory costs a worker a sixth to a quarter of its decode time.
    """

    _resuming = False

    def __init__(self, dataset: TrainShards, image_shape: Sequence[int], **kwargs: Any) -> None:
        self._collate = SlotCollate()
        super().__init__(dataset, collate_fn=self._collate, **kwargs)
        self.image_shape = tuple(image_shape)

    def load_state_dict(self, obj: dict[str, Any]) -> None:
        super().load_state_dict(obj)
        self._resuming = bool(self.restore)

    def continue_after(self, obj: dict[str, Any]) -> None:
        """The saved epoch is over: the next iteration starts the epoch after it, from its start."""
        self.current_epoch = int(obj["current_epoch"])  # LitData adds 1 as an iteration starts
        self.restore = self._resuming = False

    def __iter__(self) -> Any:
        if self.restore and not self._resuming:
            self.restore = False  # the resumed epoch was served: this one starts afresh
        self._resuming = False
        self._collate.slots = self._epoch_slots()
        return taken(super().__iter__(), self._collate.slots, bool(self.pin_memory))

    def _epoch_slots(self) -> BatchSlots | None:
        """New slots for each epoch's workers (a previous epoch's workers may still be stopping); none without
        workers, or with persistent ones (they would keep writing into their first epoch's slots)."""
        if self.num_workers == 0 or self.persistent_workers:
            return None
        context = self.multiprocessing_context or torch.multiprocessing
        per_worker = (self.prefetch_factor or 2) + 1  # its batches in flight, and the one it starts meanwhile
        try:
            return BatchSlots(self.num_workers, (self.batch_size, *self.image_shape), per_worker, context)
        except RuntimeError as exc:  # shared memory too small for them, e.g. a container's 64 MB /dev/shm
            log.warning("no batch slots this epoch (%s): worker batches travel in new shared memory each, as "
                        "DataLoader's do; in a container, give it more (docker run --shm-size=2g)", exc)
            return None


class EvalShards(Dataset):
    """A split read in order (map-style), each sample decoded, resized and centre-cropped."""

    def __init__(self, shards: ShardSet, split: str, transform: PhotoTransform) -> None:
        self.folder = str(shards.split_dir(split))
        self.split = split
        self.size = shards.count(split)
        self.photo = transform
        self.shards_root = str(shards.root)
        self._stream: StreamingDataset | None = None  # opened in the process that reads (each worker its own)

    def __len__(self) -> int:
        return self.size

    def item(self, i: int) -> Mapping[str, Any]:
        if self._stream is None:
            self._stream = StreamingDataset(self.folder)
        return self._stream[int(i)]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            item = self.item(i)
            return self.photo.eval(item), int(item["label"])
        except Exception as exc:
            assert self._stream is not None and self._stream.cache is not None
            _, chunk = self._stream.cache._get_chunk_index_from_index(int(i))  # (index in the chunk, chunk)
            raise _read_error(self.shards_root, self.split, chunk, i, exc) from exc

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_stream": None}  # workers open their own reader


class ShardImages:
    """A split's images as the in-memory data's ``images`` array looks to its readers (batches sliced off it, one
    image indexed), decoded on demand: ``images[i:j]`` is a lazy view, ``np.asarray`` of it decodes its images
    (resized and centre-cropped as for evaluation), so memory holds one slice at a time."""

    def __init__(self, data: EvalShards, index: range | None = None) -> None:
        self.data = data
        self.index = index if index is not None else range(len(data))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: int | slice) -> Any:
        if isinstance(key, slice):
            return ShardImages(self.data, self.index[key])
        return self.data[self.index[key]][0].numpy()

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        images = [self.data[i][0].numpy() for i in self.index]
        out = np.stack(images) if images else np.zeros((0, self.data.photo.channels, *self.data.photo.image_size),
                                                       np.uint8)
        return out if dtype is None else out.astype(dtype)


@dataclass
class ShardSplit:
    """A split as the reports and the deployed-model checks read it: labels and source files in the split's order,
    class counts, and its images decoded on demand (:class:`ShardImages`)."""

    name: str
    labels: np.ndarray
    counts: dict[str, int]
    images: ShardImages
    shards: ShardSet

    @property
    def sources(self) -> list[str]:
        """The source file of every sample, read when a report asks (a million-photo train split's list is not
        needed to train)."""
        return self.shards.sources(self.name)

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        return dict(self.counts)


def _pair(value: Any, key: str, low: float, high: float | None) -> tuple[float, float]:
    """``[a, b]`` with low < a <= b (<= high)."""
    ok = (isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if ok:
        a, b = float(value[0]), float(value[1])
        ok = low < a <= b and (high is None or b <= high)
    if not ok:
        bound = f"{low} < a <= b" + (f" <= {high}" if high is not None else "")
        raise ConfigError(f"{key}={value!r} must be [a, b] with {bound}")
    return a, b


class ShardsDataModule(TrainLoaderPosition, L.LightningDataModule):
    """Streams a shard directory (``data=shards data.root=<shard dir>``); see the module docstring.

    Arguments are checked (:class:`ConfigError` naming ``data.<key>``) before any data is read; ``setup`` opens and
    checks the shard directory (missing, partial, another version, damaged chunk: one line naming it and the fix).
    """

    source = "shards"

    def __init__(self, root: str | None, image_size: Any, *, batch_size: int, eval_batch_size: int,
                 crop_scale: Sequence[float], crop_ratio: Sequence[float], eval_crop_fraction: float,
                 num_workers: int | str, seed: int, augment: Mapping[str, Any] | None = None,
                 class_weighting: bool = False, name: str = "shards", exclude: Any = None) -> None:
        super().__init__()
        self.root = root
        self.exclude = exclude  # refused unless None: prepare leaves images out
        self.name = name
        self._given = dict(image_size=image_size, batch_size=batch_size, eval_batch_size=eval_batch_size,
                           crop_scale=crop_scale, crop_ratio=crop_ratio, eval_crop_fraction=eval_crop_fraction,
                           num_workers=num_workers, seed=seed, class_weighting=class_weighting)
        self.augment = AugmentConfig.from_mapping(dict(augment or {}))
        self.batches_per_step = 1
        self.shards: ShardSet | None = None
        self.transform: PhotoTransform | None = None
        self.train_set: ShardSplit | None = None
        self.val_set: ShardSplit | None = None
        self.test_set: ShardSplit | None = None

    # --- checking the arguments ------------------------------------------------------------------
    @classmethod
    def check_config(cls, data: Mapping[str, Any]) -> None:
        check_by_construction(cls, data, "a setting of data=shards")

    def _check(self) -> None:
        if self.transform is not None:
            return
        given = self._given
        if self.root is None:
            raise ConfigError("data=shards needs data.root=<shard dir> (the out= of python -m lit_vision.prepare)")
        if self.exclude is not None:
            raise ConfigError(f"data.exclude={self.exclude!r} is not used by data=shards: its shards are already "
                              "written. Pass data.exclude to python -m lit_vision.prepare instead (data=image_folder "
                              "data.root=<photos> data.exclude=<list> out=<new shard dir>), then train on that "
                              "shard dir with data.exclude=null")
        size = parse_image_size(given["image_size"])
        if size is None:
            raise ConfigError("data=shards needs data.image_size (e.g. 224): the stored photos differ in size")
        if self.augment.crop_padding:
            raise ConfigError("data.augment.crop_padding is the in-memory data's pad-and-crop; data=shards crops "
                              "with data.crop_scale and data.crop_ratio (RandomResizedCrop): set crop_padding=0")
        self.batch_size = positive_int(given["batch_size"], "data.batch_size")
        self.eval_batch_size = positive_int(given["eval_batch_size"], "data.eval_batch_size")
        self.num_workers = given["num_workers"] if given["num_workers"] == "auto" else \
            non_negative_int(given["num_workers"], "data.num_workers")
        self.class_weighting = flag(given["class_weighting"], "data.class_weighting")
        fraction = given["eval_crop_fraction"]
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
            raise ConfigError(f"data.eval_crop_fraction={fraction!r} must be in (0, 1] (0.875: the shorter side is "
                              "resized to image_size / 0.875, then the centre is cropped)")
        self.transform = PhotoTransform(channels=3, image_size=size,
                                        crop_scale=_pair(given["crop_scale"], "data.crop_scale", 0.0, 1.0),
                                        crop_ratio=_pair(given["crop_ratio"], "data.crop_ratio", 0.0, None),
                                        eval_crop_fraction=float(fraction),
                                        seed=seed_value(given["seed"], "data.seed"))

    # --- loading -------------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._check()

    def setup(self, stage: str | None = None) -> None:
        self._check()
        if self.shards is not None:
            return
        shards = open_shards(self.root)
        assert self.transform is not None
        self.transform = PhotoTransform(**{**asdict(self.transform), "channels": shards.channels})
        if "val" not in shards.splits:
            raise ConfigError(f"{shards.root} has no val split; prepare it again (prepare holds out "
                              "data.val_fraction of train when there is no val folder)")
        splits = {s: ShardSplit(s, shards.labels(s), shards.class_counts(s),
                                ShardImages(EvalShards(shards, s, self.transform)), shards) for s in shards.splits}
        self.shards = shards
        self.train_set, self.val_set, self.test_set = splits["train"], splits["val"], splits.get("test")
        log.info("data %s (%s): train %s | val %s | test %s", self.name, shards.root, self.train_set.counts,
                 self.val_set.counts, self.test_set.counts if self.test_set else "none")

    # --- what the model needs to know --------------------------------------------------------
    def _require(self) -> ShardSet:
        if self.shards is None:
            raise RuntimeError("call setup() before asking the data module about its data")
        return self.shards

    @property
    def class_names(self) -> list[str]:
        return self._require().class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self._require().channels

    @property
    def image_size(self) -> list[int]:
        assert self.transform is not None
        return list(self.transform.image_size)

    @property
    def eval_crop_fraction(self) -> float:
        """The evaluation view's crop (``data.eval_crop_fraction``): ``builders.input_spec`` stores it in the
        checkpoint, so predict, serve and the ONNX export decode photos as validation and test did."""
        assert self.transform is not None
        return self.transform.eval_crop_fraction

    def class_weights(self) -> list[float] | None:
        if not self.class_weighting:
            return None
        counts = self._require().class_counts("train")
        labels = np.repeat(np.arange(self.num_classes), [counts[n] for n in self.class_names])
        return class_weights(labels, self.num_classes)

    def pixel_stats(self, max_images: int = 10_000) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the training photos, measured by prepare over every pixel."""
        manifest = self._require().manifest
        return list(manifest["mean"]), list(manifest["std"])

    def train_sample(self, max_images: int) -> torch.Tensor:
        """A seeded sample of training photos, resized and centre-cropped as for evaluation, uint8."""
        assert self.transform is not None
        data = EvalShards(self._require(), "train", self.transform)
        rng = np.random.default_rng(self.transform.seed)
        idx = np.sort(rng.choice(len(data), size=min(max_images, len(data)), replace=False))
        return torch.stack([data[int(i)][0] for i in idx])

    def describe(self) -> dict[str, Any]:
        assert self.transform is not None
        return {"name": self.name, "source": self.source, "root": str(self._require().root),
                "class_names": self.class_names, "channels": self.channels, "image_size": self.image_size,
                "crop_scale": list(self.transform.crop_scale), "crop_ratio": list(self.transform.crop_ratio),
                "eval_crop_fraction": self.transform.eval_crop_fraction, "augment": asdict(self.augment),
                "counts": {s.name: s.counts for s in (self.train_set, self.val_set, self.test_set) if s is not None}}

    # --- loaders -------------------------------------------------------------------------------
    def _world(self) -> tuple[int, bool]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, False
        return int(trainer.world_size), trainer.strategy.root_device.type == "cuda"

    def _workers(self) -> int:
        """``data.num_workers``; auto = the CPUs this process may use, shared by the processes of this node."""
        if self.num_workers != "auto":
            return int(self.num_workers)
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        trainer = getattr(self, "trainer", None)
        per_node = max(1, int(trainer.world_size) // max(1, int(trainer.num_nodes))) if trainer is not None else 1
        return max(1, cpus // per_node)

    def group_train_batches(self, steps: int) -> None:
        self.batches_per_step = positive_int(steps, "steps_per_execution")

    def train_dataloader(self) -> ShardsLoader:
        assert self.transform is not None
        world, pin = self._world()
        dataset = TrainShards(self._require(), self.transform, drop_last=world > 1)
        loader = ShardsLoader(dataset, (self.channels, *self.transform.image_size),
                              batch_size=self.batch_size * self.batches_per_step, num_workers=self._workers(),
                              pin_memory=pin, worker_init_fn=start_worker)
        return self.track_train_loader(loader)

    def _eval_loader(self, split: ShardSplit | None) -> DataLoader:
        if split is None:
            raise ConfigError(f"{self._require().root} has no test split; prepare shards from a folder with test/")
        _, pin = self._world()
        return DataLoader(split.images.data, batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self._workers(), pin_memory=pin, worker_init_fn=start_worker)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_set)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        trainer = getattr(self, "trainer", None)
        return transfer_batch(batch, self.augment, trainer is not None and trainer.training)


def require_in_memory(data: Mapping[str, Any], command: str) -> None:
    """xgb, baseline and inspect work on whole splits in memory: refuse a ``data=shards`` config before any read."""
    if str(data.get("_target_", "")).endswith(ShardsDataModule.__name__):
        raise ConfigError(f"{command} needs the images in memory, and data=shards streams them; run it on the image "
                          "folder the shards were prepared from (data=image_folder data.root=<photos> "
                          "data.image_size=[H,W])")


__all__ = ["ShardsDataModule", "TrainShards", "EvalShards", "PhotoTransform", "crop_box", "require_in_memory",
           "to_float"]
