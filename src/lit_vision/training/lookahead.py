"""airbench's lookahead: every few steps the net is pulled back towards a running average of its weights.

Unlike an EMA kept beside the net (``model.ema_decay``), the average is copied *into* the net, so training
continues from it (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back"). airbench94 starts after
``start_epoch`` epochs, updates every ``every`` steps with the decay ``decay**every x (step / total)**power`` —
near 0 early (the average follows the net), strong at the end — and at the end of each epoch sets the net to the
average, so validation, checkpoints and the test see the averaged weights. The average is part of the callback's
checkpoint state: a resumed run continues it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from lit_vision.checks import fraction, non_negative_int, non_negative_number, positive_int
from lit_vision.errors import ConfigError

#: ``model.lookahead`` keys and airbench94's values for them
LOOKAHEAD_DEFAULTS = {"every": 5, "decay": 0.95, "power": 3.0, "start_epoch": 3}


class Lookahead(Callback):
    def __init__(self, every: int = 5, decay: float = 0.95, power: float = 3.0, start_epoch: int = 3) -> None:
        self.every, self.decay, self.power, self.start_epoch = int(every), float(decay), float(power), int(start_epoch)
        self.average: dict[str, torch.Tensor] | None = None

    @staticmethod
    def _averaged_state(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """The net's floating-point weights and buffers (BatchNorm running statistics too, as airbench)."""
        net = getattr(pl_module, "net", pl_module)
        return {k: v for k, v in net.state_dict(keep_vars=True).items() if v.is_floating_point()}

    @torch.no_grad()
    def _pull(self, pl_module: L.LightningModule, decay: float) -> None:
        """average ← decay x average + (1 - decay) x net; then net ← average."""
        for name, value in self._averaged_state(pl_module).items():
            average = self.average[name]
            average.lerp_(value.detach().to(average.dtype), 1.0 - decay)
            value.data.copy_(average)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step
        if trainer.current_epoch < self.start_epoch or step % self.every:
            return
        if self.average is None:
            self.average = {k: v.detach().clone() for k, v in self._averaged_state(pl_module).items()}
            return
        total = max(1, trainer.estimated_stepping_batches)
        self._pull(pl_module, self.decay ** self.every * min(1.0, step / total) ** self.power)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.average is not None:
            self._pull(pl_module, 1.0)  # the net becomes the average

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.average = state_dict.get("average")


def lookahead_from_config(settings: Mapping[str, Any] | None) -> Lookahead | None:
    """``model.lookahead``: null (off), or a mapping of :data:`LOOKAHEAD_DEFAULTS`' keys (missing ones take
    airbench94's values); anything else is refused with the key named."""
    if settings is None:
        return None
    if not isinstance(settings, Mapping):
        raise ConfigError(f"model.lookahead={settings!r}: use null (off) or a mapping such as {LOOKAHEAD_DEFAULTS}")
    unknown = sorted(set(settings) - set(LOOKAHEAD_DEFAULTS))
    if unknown:
        raise ConfigError(f"model.lookahead has unknown key(s) {unknown}; allowed: {sorted(LOOKAHEAD_DEFAULTS)}")
    values = {**LOOKAHEAD_DEFAULTS, **settings}
    return Lookahead(every=positive_int(values["every"], "model.lookahead.every"),
                     decay=fraction(values["decay"], "model.lookahead.decay"),
                     power=non_negative_number(values["power"], "model.lookahead.power"),
                     start_epoch=non_negative_int(values["start_epoch"], "model.lookahead.start_epoch"))
