"""The training side of a tune trial (``trial=`` in the train config, set by ``lit_vision.tune``): report the
validation metric to the study after every epoch and stop early when the pruner says so.

A pruned trial is not an error: training stops at the end of that epoch, the run is tested and reported as
usual, and ``metrics.json`` says ``"pruned": {"epoch": e, "value": v}``; the tune process then records the trial
as PRUNED. (Raising ``optuna.TrialPruned`` inside Lightning's loop, as optuna-integration's callback does, would
end the run without its report.)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import optuna
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.trainer.states import TrainerFn

from lit_vision.errors import ConfigError

TRIAL_KEYS = {"storage", "study", "number", "metric", "pruner", "startup_trials", "warmup_epochs"}
PRUNERS = ("median", "hyperband", "none")


def make_pruner(name: str, startup_trials: int, warmup_epochs: int) -> optuna.pruners.BasePruner:
    """``tune.pruner``. The pruner is not kept in the study's storage: the tune process and every trial's training
    process build the same one from these settings."""
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_epochs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, warmup_epochs))
    return optuna.pruners.NopPruner()


def check_trial(trial: Any) -> None:
    """``trial``: null, or the study's ``storage`` URL and ``study`` name, the trial ``number``, the ``metric`` it
    reports and the pruner's settings."""
    if trial is None:
        return
    if not isinstance(trial, Mapping) or set(trial) != TRIAL_KEYS:
        raise ConfigError(f"trial={trial!r} is set by lit_vision.tune ({sorted(TRIAL_KEYS)}); leave it null")


def open_trial(trial: Mapping[str, Any]) -> optuna.Trial:
    storage = optuna.storages.get_storage(str(trial["storage"]))
    pruner = make_pruner(str(trial["pruner"]), int(trial["startup_trials"]), int(trial["warmup_epochs"]))
    study = optuna.load_study(study_name=str(trial["study"]), storage=storage, pruner=pruner)
    study_id = storage.get_study_id_from_name(str(trial["study"]))
    return optuna.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, int(trial["number"])))


class TrialReporter(Callback):
    """See the module docstring. Under DDP, rank 0 reports and decides; every rank stops at the same epoch."""

    def __init__(self, trial: Mapping[str, Any]) -> None:
        self.spec = dict(trial)
        self.trial: optuna.Trial | None = None
        self.pruned: dict[str, float] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.trial = open_trial(self.spec)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:
            return  # not the validation after the fit (validate_best): that epoch was reported already
        prune = False
        if trainer.is_global_zero and self.trial is not None:
            value = trainer.callback_metrics.get(str(self.spec["metric"]))
            if value is not None and math.isfinite(float(value)):
                self.trial.report(float(value), step=trainer.current_epoch)
                prune = self.trial.should_prune()
                if prune:
                    self.pruned = {"epoch": trainer.current_epoch, "value": float(value)}
        if trainer.world_size > 1:
            prune = bool(trainer.strategy.broadcast(prune, src=0))
        if prune:
            trainer.should_stop = True

    def record(self) -> dict[str, Any]:
        """What the run's ``metrics.json`` says about the trial."""
        return {"trial": int(self.spec["number"]), "study": str(self.spec["study"]), "pruned": self.pruned}


__all__ = ["TrialReporter", "check_trial"]
