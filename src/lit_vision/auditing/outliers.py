"""Outliers: images far from every class in a trained net's embedding.

An image's outlier score is its mean distance to its ``k`` nearest training images (L2-normalised embeddings, never
itself), divided by the median of the same mean distance over the training split. Above ``outlier_factor`` it is
flagged: far from anything the net learned to place, whatever its label (a non-face in a face set, a blank frame,
a screenshot among photos). Relative to the training split's own distances, so the rule holds for any net.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lit_vision.auditing.findings import OUTLIER, Finding
from lit_vision.auditing.neighbours import nearest


def outlier_scores(embeddings: Mapping[str, np.ndarray], k: int, device: str = "cpu") -> dict[str, np.ndarray]:
    """``{split: score}``: mean distance to the ``k`` nearest training images over the training split's median."""
    train = embeddings["train"]
    k = min(k, len(train) - 1)
    mean_distance = {split: nearest(e, None if split == "train" else train, k=k, device=device)[0].mean(axis=1)
                     for split, e in embeddings.items()}
    median = max(float(np.median(mean_distance["train"])), 1e-12)
    return {split: d / median for split, d in mean_distance.items()}


def find_outliers(scores: Mapping[str, np.ndarray], items: Mapping[str, Sequence[str]],
                  labels: Mapping[str, np.ndarray], class_names: Sequence[str], factor: float) -> list[Finding]:
    return [Finding(split=split, item=items[split][row], kind=OUTLIER, score=float(score[row]),
                    given=class_names[int(labels[split][row])],
                    detail=f"mean distance to nearest training images {score[row]:.2f} x the median", index=int(row))
            for split, score in scores.items() for row in np.flatnonzero(score > factor)]
