"""Combining several models' class probabilities (numpy only, so reading tables never imports torch)."""

from __future__ import annotations

import numpy as np


def mean_probability(stack: np.ndarray) -> np.ndarray:
    """(M, N, K) probabilities → (N, K) mean; a row any model could not score stays NaN."""
    return stack.mean(axis=0)


def majority_vote(stack: np.ndarray) -> np.ndarray:
    """(M, N, K) probabilities → (N, K) vote shares; ties go to the class with the higher mean probability."""
    m, n, k = stack.shape
    votes = np.zeros((n, k))
    for probs in stack:
        ok = ~np.isnan(probs).any(axis=1)
        votes[np.flatnonzero(ok), probs[ok].argmax(axis=1)] += 1
    shares = votes / m
    shares += 1e-6 * np.nan_to_num(stack.mean(axis=0))  # tie-break only
    shares[np.isnan(stack).any(axis=(0, 2))] = np.nan
    return shares
