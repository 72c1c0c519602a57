"""What ``conf/callbacks`` and ``conf/logger`` instantiate besides Lightning's own classes, and the console filters.

A run's console shows the data summary, the net's layers, the progress bar and the final tables. Lightning adds
lines that say nothing about the run (adverts, "no GPU/TPU" on a CPU run, a deprecation inside Lightning itself);
:func:`quiet_known_noise` drops exactly those, by their text, in this one place.
"""

from __future__ import annotations

import csv
import logging
import re
import sys
import time
import warnings
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelSummary, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from torch.nn.parameter import UninitializedParameter
from torchmetrics import Metric, MetricCollection

log = logging.getLogger(__name__)


# --- progress bar ----------------------------------------------------------------------------------
class StepLossInBar:
    """Progress-bar mixin: show the last logged ``train/loss_step`` (the module's ``logged_step_loss``, a number).

    The module logs it without ``prog_bar``: Lightning turns every progress-bar value into a Python number at every
    training step (Lightning-AI/pytorch-lightning #21232), a host sync per step on a GPU. The module reads it once,
    on the step the loggers write it (where they read it too)."""

    KEY = "train/loss_step"

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)  # type: ignore[misc]
        loss = getattr(pl_module, "logged_step_loss", None)
        if loss is not None:
            metrics[self.KEY] = loss
        return metrics


class RichStepLossBar(StepLossInBar, RichProgressBar):
    """Lightning's Rich bar with the logged step loss (:class:`StepLossInBar`)."""


class TQDMStepLossBar(StepLossInBar, TQDMProgressBar):
    """Lightning's TQDM bar with the logged step loss (:class:`StepLossInBar`)."""


def auto_progress_bar(log_refresh_rate: int = 50) -> ProgressBar:
    """Rich bars in a terminal; in a log file (SLURM, CI, ``> run.log``) a TQDM bar that writes a line
    every ``log_refresh_rate`` steps, since Rich only draws its bar on a live terminal."""
    if sys.stdout.isatty():
        return RichStepLossBar()
    return TQDMStepLossBar(refresh_rate=log_refresh_rate)


# --- model summary ---------------------------------------------------------------------------------
def summary_rows(model: torch.nn.Module, max_depth: int = 1) -> list[tuple[str, str, int, str]]:
    """``(name, type, parameters, mode)`` of the model's layers down to ``max_depth`` (-1: all), leaving out
    torchmetrics objects (``train_metrics``, ``val_metrics.acc`` …): they hold no weights, only counters."""
    rows: list[tuple[str, str, int, str]] = []
    skipped: list[str] = []
    for name, module in model.named_modules():
        if not name or any(name.startswith(prefix + ".") for prefix in skipped):
            continue
        if isinstance(module, (Metric, MetricCollection)):
            skipped.append(name)
            continue
        if max_depth >= 0 and name.count(".") + 1 > max_depth:
            continue
        params = sum(p.numel() for p in module.parameters() if not isinstance(p, UninitializedParameter))
        rows.append((name, type(module).__name__, params, "train" if module.training else "eval"))
    return rows


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return str(n)


class NetSummary(ModelSummary):
    """Lightning's model summary of the net's layers only: no metric objects, no FLOPs column (always 0 here,
    since the module has no ``example_input_array``). Printed once, by rank 0, when fitting starts."""

    def __init__(self, max_depth: int = 1) -> None:
        super().__init__(max_depth=max_depth)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        from rich import get_console
        from rich.table import Table

        table = Table(header_style="bold magenta")
        for column, justify in ((" ", "right"), ("Name", "left"), ("Type", "left"), ("Params", "right"),
                                ("Mode", "left")):
            table.add_column(column, justify=justify, no_wrap=column == "Name")  # type: ignore[arg-type]
        for i, (name, kind, params, mode) in enumerate(summary_rows(pl_module, self._max_depth)):
            table.add_row(str(i), name, kind, _count(params), mode)
        params = [p for p in pl_module.parameters() if not isinstance(p, UninitializedParameter)]
        trainable = sum(p.numel() for p in params if p.requires_grad)
        total = sum(p.numel() for p in params)
        size_mb = sum(p.numel() * p.element_size() for p in params) / 1e6
        console = get_console()
        console.print(table)
        console.print(f"[bold]Trainable params[/]: {_count(trainable)}\n"
                      f"[bold]Non-trainable params[/]: {_count(total - trainable)}\n"
                      f"[bold]Total params[/]: {_count(total)}\n"
                      f"[bold]Parameter size (MB)[/]: {size_mb:,.3f}")


# --- wall time -------------------------------------------------------------------------------------
class EpochTimer(Callback):
    """Log the wall time of training, once per epoch: ``time/epoch_seconds`` (the training part of the epoch) and
    ``time/train_seconds`` (training seconds of the whole fit so far, at the end of that epoch).

    Training seconds run from ``on_train_epoch_start`` to ``on_train_epoch_end`` *minus* every validation run
    inside the epoch (``on_validation_start`` → ``on_validation_end``): validation, the sanity check, setup, the
    epoch-end checkpoints (saved after this hook) and the final validate/test are not training seconds.
    ``perf_counter`` is read at those boundaries only: there is no host synchronisation per step. On a CUDA device
    the clock is read after a ``torch.cuda.synchronize`` when validation starts and when the epoch ends (at most
    two per epoch), so queued GPU work is counted where it belongs.

    The total travels in the checkpoint (:meth:`state_dict`), so a resumed run continues the count; a checkpoint
    written mid-epoch (``every_n_train_steps``) also carries that epoch's seconds so far. A restored state is
    applied when training starts, so ``trainer.validate/test(ckpt_path=...)`` after the fit leave
    :attr:`train_seconds` as it is. With several processes (DDP) each rank logs its own clock and rank 0's is
    recorded (ranks step in lockstep, so they agree to within a step).
    """

    EPOCH_KEY = "time/epoch_seconds"
    TOTAL_KEY = "time/train_seconds"

    def __init__(self) -> None:
        self.train_seconds = 0.0  #: training seconds of the fit, up to the last finished epoch
        self._start: float | None = None  # perf_counter when this process started timing the current epoch
        self._validation = 0.0  # validation seconds inside the current epoch
        self._validation_start: float | None = None
        self._carried: float | None = None  # the current epoch's seconds before a mid-epoch checkpoint was written
        self._restored: dict[str, Any] | None = None  # checkpoint state, applied when (and only if) a fit starts

    @staticmethod
    def _now(pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def _epoch_so_far(self, now: float) -> float:
        assert self._start is not None
        running = (now - self._validation_start) if self._validation_start is not None else 0.0
        return (self._carried or 0.0) + now - self._start - self._validation - running

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is not None:
            self.train_seconds = float(self._restored.get("train_seconds", 0.0))
            self._carried, self._restored = self._restored.get("epoch_seconds_so_far"), None
        # a run resumed mid-epoch gets no on_train_epoch_start for that epoch: its clock starts here
        if self._carried is not None:
            self._start, self._validation, self._validation_start = time.perf_counter(), 0.0, None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start, self._validation, self._validation_start, self._carried = time.perf_counter(), 0.0, None, None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None and not trainer.sanity_checking:
            self._validation_start = self._now(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is not None and self._validation_start is not None:
            self._validation += time.perf_counter() - self._validation_start
            self._validation_start = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._start is None:  # an epoch this process did not see start (nothing to time)
            return
        seconds = self._epoch_so_far(self._now(pl_module))
        self.train_seconds += seconds
        self._start, self._carried = None, None
        for key, value in ((self.EPOCH_KEY, seconds), (self.TOTAL_KEY, self.train_seconds)):
            # no sync_dist: a synced value is reduced lazily, and rank 0's progress bar would then start a collective
            # the other ranks do not join (a DDP deadlock); each rank logs its own clock, rank 0's is recorded
            pl_module.log(key, value, on_step=False, on_epoch=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = None  # trainer.validate/test after fit are not training

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restored = None  # validate/test(ckpt_path=best) restore callback states too: they must not count

    def state_dict(self) -> dict[str, Any]:
        mid_epoch = self._epoch_so_far(time.perf_counter()) if self._start is not None else None
        return {"train_seconds": self.train_seconds, "epoch_seconds_so_far": mid_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)


# --- CSV logger ------------------------------------------------------------------------------------
class _RunDirWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_existing: bool = False) -> None:
        self.keep_existing = keep_existing
        super().__init__(log_dir=log_dir)
        if keep_existing and self._fs.isfile(self.metrics_file_path):  # append under the existing header
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys = sorted(csv.DictReader(f).fieldnames or [])

    def _check_log_dir_exists(self) -> None:
        # Lightning warns whenever the folder is not empty, but only metrics.csv is ever deleted; the run dir always
        # holds .hydra/ and the log file. So warn (and delete, as Lightning does) only when metrics.csv is there,
        # and keep it when the run resumes: its finished epochs belong to this run's history.
        if self.keep_existing:
            return
        if self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()


class RunDirCSVLogger(CSVLogger):
    """Lightning's :class:`CSVLogger` writing ``metrics.csv`` straight into the run dir, warning only when an
    earlier ``metrics.csv`` is about to be replaced (not merely because Hydra's files are already there)."""

    #: set by ``train.fit`` when the run resumes from a checkpoint: append to ``metrics.csv`` instead of replacing it
    keep_existing = False

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _RunDirWriter(log_dir=self.log_dir, keep_existing=self.keep_existing)
        return self._experiment


# --- console filters -------------------------------------------------------------------------------
#: Lightning INFO lines that say nothing about the run; matched from the start of the message.
LIGHTNING_NOISE = (
    r"💡 Tip: ",  # every Trainer advertises litlogger/litmodels; no setting turns it off
    r"GPU available: False, used: False$",  # on a CPU-only machine; kept when a GPU exists (used or not)
    r"TPU available: False, using: 0 TPU cores$",
)


class _DropLines(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.match(message) for p in self.patterns)


def quiet_known_noise() -> None:
    """Drop :data:`LIGHTNING_NOISE` and one known-harmless warning; idempotent. Nothing else is hidden."""
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info logs
    if not any(isinstance(f, _DropLines) for f in rank_zero.filters):
        rank_zero.addFilter(_DropLines(LIGHTNING_NOISE))
    # Lightning's own utilities/_pytree.py builds a torch LeafSpec, which torch >= 2.10 deprecates: printed on every
    # fit/validate/test, about Lightning's code, nothing a lit_vision user can act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")
    # ImageClassifier.on_before_batch_transfer (the exact mid-epoch resume, training/epoch_state.py) is meant to run
    # next to the data module's on_after_batch_transfer; Lightning warns that the module's hook is the one used
    warnings.filterwarnings("ignore", message=r"You have overridden `on_before_batch_transfer` in `LightningModule`")


__all__ = ["EpochTimer", "NetSummary", "RichStepLossBar", "RunDirCSVLogger", "StepLossInBar", "TQDMStepLossBar",
           "auto_progress_bar", "quiet_known_noise", "summary_rows"]

