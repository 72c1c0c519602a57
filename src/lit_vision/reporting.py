"""Run artifacts: ``metrics.json``, ``predictions.csv``, per-epoch ``history.csv`` and a console table."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from rich.console import Console
from rich.table import Table

MAIN_METRICS = ("acc", "precision", "recall", "f1", "auroc")


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


def confusion_counts(confusion: torch.Tensor) -> dict[str, int]:
    """Binary TP/FP/FN/TN from a confusion matrix whose rows are targets and columns predictions."""
    if confusion.shape != (2, 2):
        return {}
    tn, fp, fn, tp = (int(v) for v in confusion.flatten().tolist())
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn}


def build_metrics_record(scalars: Mapping[str, Any], confusion: torch.Tensor | None,
                         class_names: Sequence[str], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Everything a run reports, with stable names (``test/acc`` …) and plain Python values."""
    record: dict[str, Any] = {k: float(_plain(v)) for k, v in sorted(scalars.items())
                              if k.startswith(("test/", "val/")) and not isinstance(_plain(v), list)}
    record["class_names"] = list(class_names)
    if confusion is not None:
        record["confusion_matrix"] = confusion.tolist()
        record["counts"] = confusion_counts(confusion)
        record["support"] = {name: int(n) for name, n in zip(class_names, confusion.sum(dim=1).tolist())}
    record.update(extra or {})
    return record


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, default=_plain))


def write_predictions(path: Path, probs: torch.Tensor, targets: torch.Tensor, class_names: Sequence[str],
                      sources: Sequence[str] | None = None) -> None:
    """One row per test image: index, source file (when known), true label, prediction, class probabilities."""
    pred = probs.argmax(dim=1)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "source", "target", "target_name", "pred", "pred_name"]
                   + [f"p_{c}" for c in class_names])
        for i in range(len(targets)):
            t, p = int(targets[i]), int(pred[i])
            src = sources[i] if sources and i < len(sources) else ""
            w.writerow([i, src, t, class_names[t], p, class_names[p]] + [f"{v:.6f}" for v in probs[i].tolist()])


def write_history(metrics_csv: Path, out: Path) -> list[dict[str, float]]:
    """Collapse Lightning's CSV log (step and epoch rows) into one row per epoch."""
    if not metrics_csv.exists():
        return []
    by_epoch: dict[int, dict[str, float]] = {}
    pending_lr: dict[str, float] = {}  # LearningRateMonitor rows carry no epoch: give them to the next epoch
    with open(metrics_csv) as f:
        for row in csv.DictReader(f):
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


def metrics_table(record: Mapping[str, Any], title: str = "metrics") -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("val", justify="right")
    table.add_column("test", justify="right")
    names = [m for m in MAIN_METRICS] + ["loss"] + sorted(
        {k.split("/", 1)[1] for k in record if "/" in k} - set(MAIN_METRICS) - {"loss"})
    for name in names:
        vals = [record.get(f"{split}/{name}") for split in ("val", "test")]
        if all(v is None for v in vals):
            continue
        table.add_row(name, *("" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"
                              for v in vals))
    if record.get("counts"):
        c = record["counts"]
        table.add_row("TP/FP/FN/TN", "", f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}")
    return table


def print_metrics(record: Mapping[str, Any], title: str = "metrics") -> None:
    Console().print(metrics_table(record, title))
