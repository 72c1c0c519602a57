"""A whole split held as tensors on the model's device, served as index-sliced batches (airbench style).

On a GPU this removes the host → device copy of every batch and the DataLoader's per-batch Python: the uint8
images go to the device once, a batch is one gather. Used for single-process runs when the split fits
(``data.on_device``, :meth:`~lit_vision.data.datamodule.VisionDataModule.train_dataloader`); DDP keeps the
DataLoader, whose distributed sampler gives each rank its shard.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch

from lit_vision.data.arrays import ImageArrays

#: share of the device's free memory the resident splits may take
DEVICE_MEMORY_SHARE = 0.25


def fits_on(device: torch.device, arrays: list[ImageArrays]) -> bool:
    """Do these uint8 splits take at most :data:`DEVICE_MEMORY_SHARE` of ``device``'s free memory?"""
    if device.type != "cuda":
        return False
    free, _ = torch.cuda.mem_get_info(device)
    return sum(a.images.nbytes + a.labels.nbytes for a in arrays) <= DEVICE_MEMORY_SHARE * free


class DeviceBatches:
    """Iterable of ``(uint8 images, int64 labels)`` batches sliced from tensors already on ``device``.

    ``shuffle`` draws a new permutation each epoch from a generator seeded with ``seed + epoch``, so runs repeat.
    """

    def __init__(self, arrays: ImageArrays, batch_size: int, shuffle: bool, device: torch.device, seed: int) -> None:
        self.images = torch.from_numpy(np.ascontiguousarray(arrays.images)).to(device)
        self.labels = torch.from_numpy(np.asarray(arrays.labels, dtype=np.int64)).to(device)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, device = len(self.labels), self.labels.device
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).to(device)
        else:
            order = torch.arange(n, device=device)
        self.epoch += 1
        for start in range(0, n, self.batch_size):
            index = order[start:start + self.batch_size]
            yield self.images[index], self.labels[index]
