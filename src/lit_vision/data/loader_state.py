"""The training loader's position inside an epoch, saved and restored through the data module.

Lightning saves the ``state_dict()`` of a stateful training loader in each checkpoint and hands it back before the
resumed run's first batch, unless the training loader was built before the checkpoint was restored: a per-step
schedule (OneCycle, cosine) reads ``trainer.estimated_stepping_batches`` in ``configure_optimizers``, which builds
the loader early, and the loader's saved position is then silently dropped (Lightning issue #20550; LitData
issue #775 is the same loss for its ``StreamingDataLoader``). The resumed epoch would start over in a new order.

The data module's own ``state_dict``/``load_state_dict`` are saved and restored by Lightning *before* anything builds
a loader, so :class:`TrainLoaderPosition` keeps the position there too and applies it to the training loader
whenever that loader is built. Loading the same position twice (here and by Lightning, where its own path works) is
harmless: both loaders of the project take the saved state as "resume this epoch from there".
"""

from __future__ import annotations

from typing import Any

#: the data module's checkpoint entries: the training loader's position, and whether its epoch was over
KEY = "train_loader"
EPOCH_OVER = "epoch_over"


class TrainLoaderPosition:
    """Mixin for a LightningDataModule: remembers the training loader it built and checkpoints its position.

    A checkpoint at an epoch's end (or after its last batch; a ``limit_train_batches`` epoch ends before its loader
    does) resumes with the next epoch: the loader is not positioned (Lightning positions none either), but a loader
    that counts epochs itself is told which one ended (``continue_after``)."""

    _train_loader: Any = None
    _pending: tuple[dict[str, Any], bool] | None = None

    def track_train_loader(self, loader: Any) -> Any:
        """Call on the training loader as it is returned: a position restored from a checkpoint is applied to it."""
        self._train_loader = loader
        if self._pending is not None:
            position, epoch_over = self._pending
            self._pending = None
            if not epoch_over and hasattr(loader, "load_state_dict"):
                loader.load_state_dict(position)
            elif epoch_over and hasattr(loader, "continue_after"):
                loader.continue_after(position)
        return loader

    def state_dict(self) -> dict[str, Any]:
        loader = self._train_loader
        if loader is None or not hasattr(loader, "state_dict"):
            return {}
        return {KEY: loader.state_dict(), EPOCH_OVER: self._epoch_over()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if KEY not in state_dict:
            return
        self._pending = (state_dict[KEY], bool(state_dict.get(EPOCH_OVER, False)))
        if self._train_loader is not None:
            self.track_train_loader(self._train_loader)

    def _epoch_over(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer is not None and bool(trainer.fit_loop.epoch_loop.done)
