"""Batch slots (lit_vision.data.batch_slots): DataLoader workers write batches into shared-memory slots that the
training process copies out and hands back. Every batch arrives intact whether the slots are used, exhausted (a
slow consumer: the worker collates the default way) or the workers are spawned; labels arrive as int64 tensors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lit_vision.data.batch_slots import BatchSlots, SlotCollate, SlotRef, taken

SHAPE = (3, 8, 6)
BATCH = 4


class Numbered(Dataset):
    """Image ``i`` is filled with ``i % 251``, its label is ``i``: a batch shows whether its images are its own."""

    def __init__(self, size: int, shape: tuple[int, ...] = SHAPE) -> None:
        self.size = size
        self.shape = shape

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.full(self.shape, i % 251, dtype=torch.uint8), i


def read(loader: DataLoader, slots: BatchSlots, delay: float = 0.0) -> tuple[list[Any], list[tuple[Any, Any]]]:
    """(the batches as the workers sent them, the batches after ``taken``), collecting every batch first and
    sleeping ``delay`` before each (a slow training step)."""
    raw: list[Any] = []

    def recorded() -> Iterator[Any]:
        for batch in loader:
            time.sleep(delay)
            raw.append(batch[0])
            yield batch

    return raw, list(taken(recorded(), slots, pin=False))


def loader_with_slots(size: int, workers: int, per_worker: int, context: str | None = None,
                      shape: tuple[int, ...] = SHAPE) -> tuple[DataLoader, BatchSlots]:
    collate = SlotCollate()
    loader = DataLoader(Numbered(size, shape), batch_size=BATCH, num_workers=workers, collate_fn=collate,
                        multiprocessing_context=context)
    ctx = loader.multiprocessing_context or torch.multiprocessing
    collate.slots = BatchSlots(workers, (BATCH, *SHAPE), per_worker, ctx)
    return loader, collate.slots


def assert_intact(batches: list[tuple[Any, Any]], size: int, shape: tuple[int, ...] = SHAPE) -> None:
    labels = torch.cat([y for _, y in batches])
    assert labels.dtype == torch.int64 and labels.tolist() == list(range(size))
    for images, y in batches:
        assert isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.shape[1:] == shape
        expected = (y % 251).to(torch.uint8).view(-1, 1, 1, 1).expand_as(images)
        assert torch.equal(images, expected)


def test_workers_send_slot_references_and_every_batch_arrives_intact() -> None:
    loader, slots = loader_with_slots(size=42, workers=2, per_worker=3)
    raw, batches = read(loader, slots)
    assert_intact(batches, 42)
    assert all(isinstance(r, SlotRef) for r in raw)  # a fast consumer: every batch travelled in a slot
    assert len({(r.worker, r.slot) for r in raw}) <= 2 * 3 < len(raw)  # slots were reused
    assert raw[-1].size == 42 % BATCH  # the short last batch fills part of a slot


def test_a_slow_consumer_exhausts_the_slots_and_the_workers_collate_the_default_way() -> None:
    loader, slots = loader_with_slots(size=40, workers=2, per_worker=1)
    raw, batches = read(loader, slots, delay=0.05)
    assert_intact(batches, 40)
    assert any(isinstance(r, torch.Tensor) for r in raw) and any(isinstance(r, SlotRef) for r in raw)


def test_spawned_workers_receive_the_slots() -> None:
    loader, slots = loader_with_slots(size=16, workers=2, per_worker=3, context="spawn")
    raw, batches = read(loader, slots)
    assert_intact(batches, 16)
    assert any(isinstance(r, SlotRef) for r in raw)


def test_without_workers_or_slots_the_batch_is_stacked_in_the_process() -> None:
    batches = list(taken(iter(DataLoader(Numbered(10), batch_size=BATCH, collate_fn=SlotCollate())), None, False))
    assert_intact(batches, 10)


@pytest.mark.parametrize("shape", [(2, 8, 6), (3, 8, 7)])
def test_images_of_another_shape_than_the_slots_are_stacked_by_the_worker(shape: tuple[int, ...]) -> None:
    loader, slots = loader_with_slots(size=12, workers=1, per_worker=3, shape=shape)
    raw, batches = read(loader, slots)
    assert_intact(batches, 12, shape)
    assert all(isinstance(r, torch.Tensor) for r in raw)
