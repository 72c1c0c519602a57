"""``model.ema_decay``: Lightning's :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` with an update that reads
nothing back from the device.

torch's ``AveragedModel.update_parameters`` tests its update count (``n_averaged == 0``, a tensor on the model's
device) twice per call — a host sync after every optimizer step on a GPU — and averages one tensor at a time. Here
the count is read once per fit (0 on a fresh fit, the checkpoint's on a resume) and counted on the host after that,
and the average is one ``torch._foreach_lerp_`` over the weights and floating-point buffers: the arithmetic of
``torch.optim.swa_utils.get_ema_avg_fn`` (``ema + (1 - decay) x (w - ema)``). Integer buffers (BatchNorm's batch
counts) are copied. Everything else — when it updates, the swap for validation, checkpoints, the weights kept at the
end — is Lightning's.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging


class EMAWeights(EMAWeightAveraging):
    def __init__(self, decay: float) -> None:
        super().__init__(decay=decay)
        self.decay = float(decay)
        self._updates: int | None = None  # n_averaged, once read

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        # as WeightAveraging.on_train_batch_end, with update_average for AveragedModel.update_parameters
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=trainer.global_step - 1):
            self.update_average(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._average_model is not None:  # after a resume restored it: the count, read once per fit
            self._updates = int(self._average_model.n_averaged)

    @torch.no_grad()
    def update_average(self, pl_module: L.LightningModule) -> None:
        average = self._average_model
        assert average is not None
        if self._updates is None:  # not set by on_train_start (a fit that did not go through it)
            self._updates = int(average.n_averaged)
        ours = [t.detach() for t in chain(average.module.parameters(), average.module.buffers())]
        theirs = [t.detach().to(o.device) for o, t in zip(ours, chain(pl_module.parameters(), pl_module.buffers()))]
        floats = [(o, t) for o, t in zip(ours, theirs) if o.is_floating_point()]
        if self._updates == 0:
            torch._foreach_copy_(ours, theirs)
        elif floats:
            torch._foreach_lerp_([o for o, _ in floats], [t for _, t in floats], 1.0 - self.decay)
            for o, t in zip(ours, theirs):
                if not o.is_floating_point():
                    o.copy_(t)
        average.n_averaged += 1
        self._updates += 1

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        self._updates = None  # the restored average's count, read when training starts


__all__ = ["EMAWeights"]
