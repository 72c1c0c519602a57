"""A whole split held as tensors on the model's device, served as index-sliced batches (airbench style).

On a GPU this removes the host → device copy of every batch and the DataLoader's per-batch Python: the uint8
images go to the device once, a batch is one gather. On a CPU it removes the DataLoader's per-batch work (+10%
images/s for the notebooks' dense nets, benchmarks/throughput.py). Used for single-process runs when the splits
fit (``data.on_device``, :meth:`~lit_vision.data.datamodule.VisionDataModule.train_dataloader`); DDP keeps the
DataLoader, whose distributed sampler gives each rank its shard.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from lit_vision.data.arrays import ImageArrays
from lit_vision.data.epoch_order import EpochOrder, batch_sizes

#: share of the device's free memory (a GPU's, or the host's available RAM) the resident splits may take
DEVICE_MEMORY_SHARE = 0.25


def free_memory(device: torch.device) -> int:
    """Bytes free on ``device``: the GPU's free memory, or the host's available RAM for the CPU."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type == "cpu" and hasattr(os, "sysconf"):
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return 0


def fits_on(device: torch.device, arrays: list[ImageArrays]) -> bool:
    """Do these uint8 splits take at most :data:`DEVICE_MEMORY_SHARE` of ``device``'s free memory?"""
    return sum(a.images.nbytes + a.labels.nbytes for a in arrays) <= DEVICE_MEMORY_SHARE * free_memory(device)


class DeviceBatches:
    """Iterable of ``(uint8 images, int64 labels)`` batches sliced from tensors already on ``device``.

    ``shuffle`` draws each epoch's permutation from a generator seeded with ``seed + epoch`` (:class:`EpochOrder`,
    whose ``set_epoch`` Lightning calls as ``sampler.set_epoch``), so runs repeat; ``state_dict``/``load_state_dict``
    save and restore the position inside an epoch (a mid-epoch resume continues the same epoch).
    """

    def __init__(self, arrays: ImageArrays, batch_size: int, shuffle: bool, device: torch.device, seed: int) -> None:
        # C-contiguous and writable: a read-only split (the disk cache's memory map) is copied once, since torch
        # must not wrap read-only memory ("The given NumPy array is not writable")
        self.images = torch.from_numpy(np.require(arrays.images, requirements=["C", "W"])).to(device)
        self.labels = torch.from_numpy(np.array(arrays.labels, dtype=np.int64)).to(device)  # a copy: may be read-only
        self.batch_size = int(batch_size)
        self.sampler = EpochOrder(len(self.labels), int(seed), shuffle)
        self.batch_sampler = None  # Lightning looks for one next to ``sampler``, as on a DataLoader
        self._served = 0

    def __len__(self) -> int:
        return len(self._sizes(len(self.labels)))

    def _sizes(self, images: int) -> list[int]:
        """Training batches (shuffled) keep a last image of its own with the batch before it (:func:`batch_sizes`);
        evaluation batches are plain slices."""
        return batch_sizes(images, self.batch_size) if self.sampler.shuffle else \
            [min(self.batch_size, images - s) for s in range(0, images, self.batch_size)]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.sampler.begin_epoch().to(self.labels.device)
        done = self.sampler.start // self.batch_size
        self._served = done
        for i, index in enumerate(order.split(self._sizes(len(order)))):
            self._served = done + i + 1
            yield self.images[index], self.labels[index]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.position(self._served, self.batch_size)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sampler.resume(state_dict, self.batch_size)
