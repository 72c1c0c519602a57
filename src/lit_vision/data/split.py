"""Seeded, stratified validation split (the test split is never used for model selection)."""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from lit_vision.checks import fraction


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int,
                     key: str = "data.val_fraction") -> tuple[np.ndarray, np.ndarray]:
    """Return sorted (train_index, val_index); identical for identical labels, fraction and seed.

    ``key`` is the config key the fraction came from, named in the error for a value outside (0, 1)."""
    val_fraction = fraction(val_fraction, key)
    index = np.arange(len(labels))
    counts = np.bincount(labels)
    n_val = int(np.ceil(val_fraction * len(labels)))
    classes = int((counts > 0).sum())
    # stratifying needs 2+ rows per class and at least one row per class on each side (tiny datasets)
    stratify = labels if counts[counts > 0].min() >= 2 and classes <= min(n_val, len(labels) - n_val) else None
    train_idx, val_idx = train_test_split(index, test_size=val_fraction, random_state=seed,
                                          shuffle=True, stratify=stratify)
    return np.sort(train_idx), np.sort(val_idx)
