"""Leak-free scores: the test metrics again without the test images an audit found duplicated in the training split
(as ciFAIR re-scored CIFAR: a test image the net saw in training measures memory, not generalisation)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lit_vision.auditing.findings import DUPLICATE_KINDS
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.exclude import drop_masks, read_exclude
from lit_vision.runs.reporting import score_split

KEY = "leak_free"
PREFIX = "test_leak_free"


def is_test_leak(row: Mapping[str, str]) -> bool:
    """An ``issues.csv`` row naming a test image with an exact or near duplicate in the training split."""
    return row.get("kind") in DUPLICATE_KINDS and row.get("split") == "test" and row.get("partner_split") == "train"


def check_issues(issues_csv: str) -> None:
    """``leak_free=<issues.csv>`` read before any data is: a missing file or another format is one line naming it
    (its rows are matched to the test split once it is loaded)."""
    read_exclude(issues_csv, KEY, keep=is_test_leak)


def leak_mask(issues_csv: str, test_set: ImageArrays) -> np.ndarray:
    """True for the test rows the audit's ``issues.csv`` lists as leaks. The test split may be a mapped subset of
    the audited one (a class subset, balancing): leaks outside it are skipped, but a list of which none is in it
    (an audit of other data) is an error naming it."""
    leaks = read_exclude(issues_csv, KEY, keep=is_test_leak)
    if not len(leaks):
        return np.zeros(len(test_set), dtype=bool)
    return drop_masks(leaks, {"test": (test_set.sources, test_set.ids)}, KEY, strict=False)["test"]


def leak_free_record(issues_csv: str, probs: Any, targets: Any, test_set: ImageArrays,
                     class_names: Sequence[str]) -> dict[str, Any]:
    """``test_leak_free/<metric>`` for the test split without its leaks, and how many images that left out."""
    mask = leak_mask(issues_csv, test_set)
    keep = ~mask
    scalars, _ = score_split(np.asarray(probs)[keep], np.asarray(targets)[keep], len(class_names), PREFIX)
    # a run's test/loss is its training loss (label smoothing, logit scale included); score_split's is the plain
    # cross-entropy of the probabilities: side by side they would differ by definition, not by the leaks
    scalars.pop(f"{PREFIX}/loss", None)
    return {**scalars, "leak_free": {"issues": str(issues_csv), "left_out": int(mask.sum()),
                                     "images": int(keep.sum())}}


def print_side_by_side(record: Mapping[str, Any]) -> None:
    """The test metrics on the whole split and on its leak-free part, one row per metric."""
    info = record["leak_free"]
    table = Table(title=f"test: whole split vs leak-free ({info['left_out']} leaked images left out)")
    table.add_column("metric")
    table.add_column(f"whole ({info['images'] + info['left_out']})", justify="right")
    table.add_column(f"leak-free ({info['images']})", justify="right")
    for key in sorted(k for k in record if k.startswith(f"{PREFIX}/")):
        metric = key.split("/", 1)[1]
        whole = record.get(f"test/{metric}")
        table.add_row(metric, "" if whole is None else f"{whole:.4f}", f"{record[key]:.4f}")
    Console().print(table)
