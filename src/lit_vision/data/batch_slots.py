"""Batch slots: DataLoader worker processes write their batches into shared memory allocated once per epoch, and the
training process copies each batch out and hands its slot back.

Why: by default a worker returns each batch as a tensor in new shared memory. Per batch the worker creates a
shared-memory file, the kernel allocates, zeroes and maps its pages one fault at a time as the batch is written,
and the training process fetches the file's descriptor over a socket (a connection and handshake per tensor). For
a 64 x 3 x 224 x 224 uint8 batch that is 6-9 ms of the worker's time on a 2-core EPYC, a sixth to a quarter of
what it spends decoding and cropping the 64 photos. Slots stay mapped in every process for the whole epoch; the
training process pays one memory copy per batch (about 2 ms) instead of its share of the handshakes, and labels
travel inline as a small array.

Safety: a worker writes only into a slot it took from its own queue of free slots, and the training process puts a
slot back only after copying the batch out, so no batch can be overwritten while anything still reads it. A worker
that finds no free slot (the training process is slow to collect) collates the default way: it never waits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import get_worker_info


@dataclass(frozen=True)
class SlotRef:
    """A batch written into slot ``slot`` of worker ``worker``: its first ``size`` images."""

    worker: int
    slot: int
    size: int


def label_array(samples: Sequence[tuple[torch.Tensor, int]]) -> np.ndarray:
    """The labels as an int64 array: pickled inline with the batch, not as a tensor in shared memory of its own."""
    return np.array([int(label) for _, label in samples], dtype=np.int64)


def stacked(samples: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, np.ndarray]:
    """The default hand-over: the images stacked into a new tensor, the labels as :func:`label_array`."""
    return torch.stack([image for image, _ in samples]), label_array(samples)


class BatchSlots:
    """``per_worker`` uint8 batch buffers of ``batch_shape`` (batch, C, H, W) for each of ``workers`` processes, in
    one shared-memory tensor, and each worker's queue of free slots (from ``context``, the loader's multiprocessing
    context, so spawned workers receive them too)."""

    def __init__(self, workers: int, batch_shape: Sequence[int], per_worker: int, context: Any) -> None:
        self.batch_shape = tuple(int(d) for d in batch_shape)
        self.buffers = torch.empty((workers, per_worker, *self.batch_shape), dtype=torch.uint8).share_memory_()
        self.free = [context.SimpleQueue() for _ in range(workers)]
        for queue in self.free:
            for slot in range(per_worker):
                queue.put(slot)

    def collate(self, samples: Sequence[tuple[torch.Tensor, int]]) -> tuple[SlotRef | torch.Tensor, np.ndarray]:
        """In a worker: the images into a free slot of this worker (or :func:`stacked`, when none is free or the
        images are not of the slots' shape), the labels as an int64 array."""
        info = get_worker_info()
        fits = len(samples) <= self.batch_shape[0] and all(i.shape == self.batch_shape[1:] for i, _ in samples)
        if info is None or not fits or self.free[info.id].empty():
            return stacked(samples)
        slot = self.free[info.id].get()  # only this worker takes from its queue: not empty means a slot is there
        torch.stack([image for image, _ in samples], out=self.buffers[info.id, slot, :len(samples)])
        return SlotRef(info.id, slot, len(samples)), label_array(samples)

    def copy_out(self, ref: SlotRef, pin: bool) -> torch.Tensor:
        """In the training process: the slot's images in a tensor of their own (page-locked with ``pin``, for a
        CUDA device), the slot handed back to its worker."""
        source = self.buffers[ref.worker, ref.slot, :ref.size]
        out = torch.empty(source.shape, dtype=source.dtype, pin_memory=pin)
        np.copyto(out.numpy(), source.numpy())  # one thread: the training process's threads are for training
        self.free[ref.worker].put(ref.slot)
        return out


class SlotCollate:
    """A loader's ``collate_fn`` that writes into the slots of the epoch being read (:attr:`slots`, set by the loader
    before its workers start; ``None``: stack in the training process, as without workers)."""

    slots: BatchSlots | None = None

    def __call__(self, samples: Sequence[tuple[torch.Tensor, int]]) -> tuple[SlotRef | torch.Tensor, np.ndarray]:
        return self.slots.collate(samples) if self.slots is not None else stacked(samples)


def taken(batches: Iterator[Any], slots: BatchSlots | None, pin: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``batches`` as the training process receives them, as (images, labels) tensors: each copied out of its slot
    (the slot handed back at once), or as collated where it has none."""
    for images, labels in batches:
        if isinstance(images, SlotRef):
            assert slots is not None
            images = slots.copy_out(images, pin)
        yield images, torch.from_numpy(labels)
