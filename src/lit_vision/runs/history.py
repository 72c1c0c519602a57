"""``history.csv``: one row per epoch, collapsed from Lightning's CSV log (no torch here)."""

from __future__ import annotations

import csv
from pathlib import Path

from lit_vision.runs.formats import read_csv


def write_history(metrics_csv: Path, out: Path) -> list[dict[str, float]]:
    """Collapse Lightning's CSV log (step and epoch rows) into one row per epoch."""
    by_epoch: dict[int, dict[str, float]] = {}
    pending_lr: dict[str, float] = {}  # LearningRateMonitor rows carry no epoch: give them to the next epoch
    for row in read_csv(metrics_csv):
        if not row.get("epoch"):
            pending_lr |= {k: float(v) for k, v in row.items() if k.startswith("lr-") and v not in ("", None)}
            continue
        epoch = int(float(row["epoch"]))
        target = by_epoch.setdefault(epoch, {"epoch": epoch})
        target |= pending_lr
        pending_lr = {}
        for k, v in row.items():
            if k in ("epoch", "step") or v in ("", None) or k.endswith("_step"):
                continue
            target[k.removesuffix("_epoch")] = float(v)
    rows = [by_epoch[e] for e in sorted(by_epoch)]
    if rows:
        keys = ["epoch"] + sorted({k for r in rows for k in r} - {"epoch"})
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return rows


def read_history(path: Path) -> list[dict[str, float]]:
    """``history.csv`` (one row per epoch) as a list of dicts of floats; empty cells are dropped."""
    return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in read_csv(path)]
