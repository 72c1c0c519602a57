"""What a checkpoint written mid-epoch carries, besides weights, optimizer and the loader's position
(data/epoch_order.py), so that the resumed epoch ends with the same metrics as an uninterrupted one.

* the epoch's running training sums: the loss sum, the count of correct predictions and the image count behind
  ``train/loss`` and ``train/acc``: without them the resumed epoch would report the mean of its second half only;
* the random number generators (torch CPU and CUDA, numpy, Python) at the batch boundary: augmentation, mixup and
  dropout draw from them, so the resumed batches get the same crops, flips and dropout masks.

:class:`EpochSums` keeps the sums; :class:`~lit_vision.training.classifier.ImageClassifier` saves them with
:func:`capture` in ``on_save_checkpoint`` and applies the saved state once, when training resumes: all of it before
the first batch of a mid-epoch resume (:meth:`EpochSums.resume_batch`), only the generators when the checkpoint was
written at an epoch's end (:meth:`EpochSums.start_epoch`: the next epoch starts its sums from zero).
The running sums are restored in single-process runs only: under DDP a checkpoint holds rank 0's sums alone.
Everything is plain tensors and numbers, so checkpoints still load with ``weights_only=True``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

#: the key of this state in a checkpoint
CHECKPOINT_KEY = "lit_vision_epoch_state"


def rng_states() -> dict[str, Any]:
    version, state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": [version, list(state), gauss],
                              "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, state, gauss = states["python"]
    random.setstate((version, tuple(state), gauss))
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def capture(loss_sum: torch.Tensor, correct: torch.Tensor, seen: int) -> dict[str, Any]:
    return {"loss_sum": loss_sum.detach().cpu().clone(), "correct": correct.detach().cpu().clone(), "seen": int(seen),
            "rng": rng_states()}


class EpochSums:
    """The epoch's running training loss sum, count of correct predictions and image count (``train/loss``,
    ``train/acc``), kept on the device, and the state a resumed fit continues from: read from the checkpoint by
    :meth:`load`, kept until training resumes (validate/test with a checkpoint load it too, and must not apply it)."""

    def __init__(self) -> None:
        self.loss_sum = torch.zeros(())
        self.correct = torch.zeros((), dtype=torch.long)
        self.seen = 0
        self.checked_step = 0  #: the global step at which the loss sum was last found finite
        self.resumed: dict[str, Any] | None = None

    def add(self, loss: torch.Tensor, images: int, correct: torch.Tensor) -> None:
        self.loss_sum += loss.detach() * images
        self.correct += correct
        self.seen += images

    def save(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = capture(self.loss_sum, self.correct, self.seen)

    def load(self, checkpoint: dict[str, Any]) -> None:
        self.resumed = checkpoint.get(CHECKPOINT_KEY)

    def start_epoch(self, device: torch.device) -> None:
        """Zero sums; resumed from an epoch's end: a new epoch, the same random streams."""
        self.loss_sum, self.seen = torch.zeros((), device=device), 0
        self.correct = torch.zeros((), dtype=torch.long, device=device)
        if self.resumed is not None:
            set_rng_states(self.resumed["rng"])
            self.resumed = None

    def resume_batch(self, device: torch.device, world_size: int) -> None:
        """Before the first training batch of a run resumed mid-epoch: continue the epoch's sums (one process only)
        and random streams."""
        if self.resumed is None:
            return
        state, self.resumed = self.resumed, None
        if world_size == 1:
            self.loss_sum = state["loss_sum"].to(device)
            self.seen = int(state["seen"])
            if "correct" in state:
                self.correct = state["correct"].to(device)
            else:  # written before train/acc was a count: this epoch's accuracy is the resumed part's
                log.warning("the checkpoint was written by an older lit_vision: this epoch's train/acc counts only "
                            "the batches after the resume")
        set_rng_states(state["rng"])


__all__ = ["CHECKPOINT_KEY", "EpochSums", "capture", "rng_states", "set_rng_states"]
