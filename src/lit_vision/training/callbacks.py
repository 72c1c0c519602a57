"""Progress bars that suit where the output goes."""

from __future__ import annotations

import sys

from lightning.pytorch.callbacks import ProgressBar, RichProgressBar, TQDMProgressBar


def auto_progress_bar(log_refresh_rate: int = 50) -> ProgressBar:
    """Rich bars in a terminal; in a log file (SLURM, CI, ``> run.log``) a TQDM bar that writes a line
    every ``log_refresh_rate`` steps, since Rich only draws its bar on a live terminal."""
    if sys.stdout.isatty():
        return RichProgressBar()
    return TQDMProgressBar(refresh_rate=log_refresh_rate)
