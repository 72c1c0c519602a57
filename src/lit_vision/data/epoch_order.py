"""The order an epoch serves its training images in, and where in that order a run stopped.

Lightning saves the ``state_dict()`` of every training loader that has one in each checkpoint (the fit loop's
``combined_loader`` entry) and hands it back through ``load_state_dict()`` before the first batch of a run resumed
mid-epoch. Both training loaders (:class:`ResumableDataLoader` here and
:class:`~lit_vision.data.device_batches.DeviceBatches`) implement that protocol with :class:`EpochOrder`: the saved
state is this epoch's shuffled order and the number of batches already served, so the resumed run serves the rest
of the same epoch — no image twice, none skipped — instead of restarting the epoch in a new order (Lightning's
"your dataloader is not resumable" warning).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from lit_vision.errors import LitVisionError


def batch_sizes(images: int, batch_size: int) -> list[int]:
    """The sizes of the training batches ``images`` images are served in: full batches and the rest, except that a
    rest of one image joins the batch before it. BatchNorm cannot normalise a single image in training (PyTorch
    raises "Expected more than 1 value per channel when training"), so a split of ``k * batch_size + 1`` images would
    crash at its last batch; this way every image is still served once per epoch."""
    sizes = [batch_size] * (images // batch_size) + ([images % batch_size] if images % batch_size else [])
    if len(sizes) > 1 and sizes[-1] == 1 and batch_size > 1:
        lone = sizes.pop()
        sizes[-1] += lone
    return sizes


def join_lone_last(batches: Iterable[Any], batch_size: int) -> Iterator[Any]:
    """``batches`` (tuples of tensors, all of ``batch_size`` images but the last) with a last batch of one image
    joined to the one before it: :func:`batch_sizes`'s rule for a loader that batches on its own."""
    held = None
    for batch in batches:
        if held is not None and len(batch[0]) == 1 and batch_size > 1:
            batch, held = tuple(torch.cat(parts) for parts in zip(held, batch)), None
        if held is not None:
            yield held
        held = batch
    if held is not None:
        yield held


class LoaderStateError(LitVisionError):
    """A checkpoint's loader position does not fit this run's loader (another batch size, seed or data)."""


class EpochOrder(DistributedSampler):
    """This rank's indices of an epoch: ``torch.randperm(n)`` seeded with ``seed + epoch`` (what
    :class:`~torch.utils.data.DistributedSampler` draws, so a single process and DDP ranks shuffle alike),
    or ``0..n-1`` without ``shuffle``.

    Lightning calls :meth:`set_epoch` before every epoch (also on resume); iterating without it (a loader used
    outside a Trainer) moves on to the next epoch's order each time. After :meth:`resume`, the next iteration of
    the saved epoch serves the saved order from the saved index.
    """

    def __init__(self, size: int, seed: int, shuffle: bool = True, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                         drop_last=False)
        self.current: torch.Tensor = torch.empty(0, dtype=torch.int64)  # the order of the epoch being served
        self.current_epoch = -1
        self.start = 0  # indices of ``current`` served before a resume
        self._resume: tuple[int, torch.Tensor, int] | None = None

    def indices(self, epoch: int) -> torch.Tensor:
        """This rank's order for ``epoch`` (the padding of the last rank's share as in DistributedSampler)."""
        n = len(self.dataset)  # type: ignore[arg-type]
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + epoch))
        else:
            order = torch.arange(n)
        if self.total_size > n:
            order = torch.cat([order, order[:self.total_size - n]])
        return order[self.rank:self.total_size:self.num_replicas]

    def begin_epoch(self) -> torch.Tensor:
        """The indices still to serve this epoch (all of them, unless resuming it); the default epoch moves on."""
        epoch = self.epoch
        self.set_epoch(epoch + 1)
        resume, self._resume = self._resume, None
        if resume is not None and resume[0] == epoch:
            _, self.current, self.start = resume
        else:
            self.current, self.start = self.indices(epoch), 0
        self.current_epoch = epoch
        return self.current[self.start:]

    def __iter__(self) -> Iterator[int]:
        return iter(self.begin_epoch().tolist())

    def position(self, batches: int, batch_size: int) -> dict[str, Any]:
        """The state a checkpoint keeps: the epoch, its order and the batches already served."""
        state: dict[str, Any] = {"epoch": self.current_epoch, "batches": int(batches), "batch_size": int(batch_size),
                                 "seed": self.seed, "shuffle": self.shuffle, "num_replicas": self.num_replicas,
                                 "samples": len(self.current)}
        if self.num_replicas == 1:  # a DDP checkpoint holds rank 0's state only: other ranks recompute theirs
            state["order"] = self.current.to(torch.int32)
        return state

    def resume(self, state: dict[str, Any], batch_size: int) -> None:
        """Serve ``state``'s epoch from where it stopped, after checking it fits this loader."""
        wanted = {"batch_size": int(batch_size), "seed": self.seed, "shuffle": self.shuffle,
                  "num_replicas": self.num_replicas, "samples": self.num_samples}
        found = {key: state.get(key) for key in wanted}
        if found != wanted:
            diff = ", ".join(f"{k}: checkpoint {found[k]} vs now {wanted[k]}" for k in wanted if found[k] != wanted[k])
            raise LoaderStateError(
                f"the checkpoint was written mid-epoch by a training loader that differs from this run's ({diff}). "
                "Resume with the same data, data.batch_size, steps_per_execution, data.seed and number of "
                "processes, or resume from an end-of-epoch checkpoint.")
        epoch = int(state["epoch"])
        order = state["order"].to(torch.int64) if "order" in state else self.indices(epoch)
        self._resume = (epoch, order, min(int(state["batches"]) * int(batch_size), len(order)))


class ResumableDataLoader(DataLoader):
    """A DataLoader over an :class:`EpochOrder` that saves and restores its position inside an epoch."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.sampler, EpochOrder):
            raise TypeError("ResumableDataLoader needs sampler=EpochOrder(...)")
        self._served = 0  # batches of the current epoch served so far (those before a resume included)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # a generator: the DataLoader's iterator (and EpochOrder.begin_epoch) start at the first batch requested,
        # after Lightning's set_epoch
        sampler: EpochOrder = self.sampler  # type: ignore[assignment]
        self._served = 0
        batch_size = int(self.batch_size or 1)
        for i, batch in enumerate(join_lone_last(super().__iter__(), batch_size)):
            self._served = sampler.start // batch_size + i + 1
            yield batch

    def __len__(self) -> int:
        return len(batch_sizes(len(self.sampler), int(self.batch_size or 1)))  # type: ignore[arg-type]

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.position(self._served, int(self.batch_size or 1))  # type: ignore[attr-defined]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sampler.resume(state_dict, int(self.batch_size or 1))  # type: ignore[attr-defined]
