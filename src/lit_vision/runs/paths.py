"""Run directories: how a run is named in tables, and where an entry point writes by default (no torch here)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def project_root() -> Path:
    """Where ``outputs/`` and ``data/`` live: ``$LIT_VISION_ROOT`` or the current directory.

    A clone run from its root and an installed package run from a project folder behave the same.
    """
    return Path(os.environ.get("LIT_VISION_ROOT") or os.getcwd()).resolve()


def default_output(command: str, stem: str, suffix: str = "") -> Path:
    """``outputs/<command>/<stem>_<time><suffix>`` under :func:`project_root`."""
    return project_root() / "outputs" / command / f"{stem}_{time.strftime('%Y-%m-%d_%H-%M-%S')}{suffix}"


def run_name(path: Path) -> str:
    """``outputs/<task>/runs/<time>`` → ``<task>``; ``outputs/<task>/multiruns/<time>/<n>`` → ``<task>#<n>``."""
    path = Path(path).resolve()
    if path.parent.name == "runs":
        return path.parent.parent.name
    if path.parent.parent.name == "multiruns":
        return f"{path.parent.parent.parent.name}#{path.name}"
    return path.name


def run_dir_of_checkpoint(ckpt: Path) -> Path:
    """``<run>/checkpoints/best.ckpt`` → ``<run>``; a checkpoint elsewhere → its folder."""
    ckpt = Path(ckpt)
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


#: a ``time_to_val_acc`` threshold that no epoch reached
NEVER = "never"


def timing_cells(record: Mapping[str, Any]) -> dict[str, Any]:
    """A ``metrics.json``'s training time as table cells: ``epochs``, ``train min`` and ``min to val/acc <X>`` per
    threshold (:data:`NEVER` when no epoch reached it). Keys the record lacks are left out, so old runs and
    XGBoost or baseline runs get blank cells; a threshold reached without a clock reading stays ``None``."""
    cells: dict[str, Any] = {}
    if record.get("epochs_trained") is not None:
        cells["epochs"] = record["epochs_trained"]
    if record.get("train_seconds") is not None:
        cells["train min"] = record["train_seconds"] / 60
    for threshold, hit in (record.get("time_to_val_acc") or {}).items():
        seconds = None if hit is None else hit.get("seconds")
        cells[f"min to val/acc {threshold}"] = NEVER if hit is None else None if seconds is None else seconds / 60
    return cells
