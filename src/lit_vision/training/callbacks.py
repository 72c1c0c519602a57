"""What ``conf/callbacks`` and ``conf/logger`` instantiate besides Lightning's own classes, and the console filters.

A run's console shows the data summary, the net's layers, the progress bar and the final tables. Lightning adds
lines that say nothing about the run (adverts, "no GPU/TPU" on a CPU run, a deprecation inside Lightning itself);
:func:`quiet_known_noise` drops exactly those, by their text, in this one place.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelSummary, ProgressBar, RichProgressBar, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from torch.nn.parameter import UninitializedParameter
from torchmetrics import Metric, MetricCollection

log = logging.getLogger(__name__)


# --- progress bar ----------------------------------------------------------------------------------
def auto_progress_bar(log_refresh_rate: int = 50) -> ProgressBar:
    """Rich bars in a terminal; in a log file (SLURM, CI, ``> run.log``) a TQDM bar that writes a line
    every ``log_refresh_rate`` steps, since Rich only draws its bar on a live terminal."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return TQDMProgressBar(refresh_rate=log_refresh_rate)


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


# --- CSV logger ------------------------------------------------------------------------------------
class _RunDirWriter(ExperimentWriter):
    def _check_log_dir_exists(self) -> None:
        # Lightning warns whenever the folder is not empty, but only metrics.csv is ever deleted; the run dir always
        # holds .hydra/ and the log file. So warn (and delete, as Lightning does) only when metrics.csv is there.
        if self._fs.isfile(self.metrics_file_path):
            super()._check_log_dir_exists()


class RunDirCSVLogger(CSVLogger):
    """Lightning's :class:`CSVLogger` writing ``metrics.csv`` straight into the run dir, warning only when an
    earlier ``metrics.csv`` is about to be replaced (not merely because Hydra's files are already there)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _RunDirWriter(log_dir=self.log_dir)
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


__all__ = ["NetSummary", "RunDirCSVLogger", "auto_progress_bar", "quiet_known_noise", "summary_rows"]

