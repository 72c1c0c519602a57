"""An operating point for binary tasks: the decision threshold on P(positive), chosen on the validation split
for a named goal, and the metrics a threshold gives.

Goals (``report.operating_point``):

* ``max_f1`` — the threshold with the best F1;
* ``precision>=P`` — keep junk out: the highest recall whose precision is at least P;
* ``recall>=R`` — never turn a positive away: the highest precision whose recall is at least R.

A prediction is positive when ``P(positive) >= threshold``; argmax is the threshold 0.5.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from lit_vision.errors import ConfigError, LitVisionError

GOAL = re.compile(r"^(max_f1|(precision|recall)\s*>=\s*(0?\.\d+|1(\.0*)?|0))$")


class UnreachableGoalError(LitVisionError):
    """No threshold meets the goal on the validation split."""


def parse_goal(goal: str) -> tuple[str, float | None]:
    """``"max_f1"`` → ``("max_f1", None)``; ``"precision>=0.85"`` → ``("precision", 0.85)``."""
    match = GOAL.match(str(goal).strip())
    if not match:
        raise ConfigError(f"report.operating_point={goal!r}: use max_f1, precision>=P or recall>=R with P, R in "
                          "[0, 1] (e.g. 'report.operating_point=\"precision>=0.85\"'), or null for none")
    if match.group(1) == "max_f1":
        return "max_f1", None
    return match.group(2), float(match.group(3))


def decide(probs: np.ndarray, threshold: float | None) -> np.ndarray:
    """Class indices for ``(N, K)`` probabilities: argmax, or for a binary model with a threshold, positive (1)
    when P(positive) >= threshold — the rule every consumer of an operating point applies."""
    probs = np.asarray(probs)
    if threshold is None or probs.shape[1] != 2:
        return probs.argmax(axis=1)
    return (probs[:, 1] >= threshold).astype(np.int64)


def counts_at(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, int]:
    """True/false positives/negatives when ``scores >= threshold`` is called positive."""
    pred = np.asarray(scores) >= threshold
    truth = np.asarray(targets).astype(bool)
    return {"tp": int(np.sum(pred & truth)), "fp": int(np.sum(pred & ~truth)),
            "fn": int(np.sum(~pred & truth)), "tn": int(np.sum(~pred & ~truth))}


def metrics_at(scores: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall and F1 (0 where undefined) at ``threshold``, with the counts."""
    c = counts_at(scores, targets, threshold)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    acc = (c["tp"] + c["tn"]) / max(1, sum(c.values()))
    return {"threshold": float(threshold), "acc": acc, "precision": precision, "recall": recall, "f1": f1, **c}


def _candidates(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every distinct score as a threshold, with the precision and recall it gives (one sort, cumulative sums)."""
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], targets[order].astype(bool)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(t)[last]
    fp = np.cumsum(~t)[last]
    positives = max(1, int(t.sum()))
    return s[last], tp / (tp + fp), tp / positives


def choose_threshold(scores: Any, targets: Any, goal: str) -> dict[str, Any]:
    """The threshold for ``goal`` on these (validation) scores, with the validation metrics it gives."""
    kind, bound = parse_goal(goal)
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets).astype(np.int64)
    if len(scores) == 0 or targets.min() == targets.max():
        raise UnreachableGoalError(f"operating point {goal}: the validation split needs both classes "
                                   f"({len(scores)} images, labels {sorted(set(targets.tolist()))})")
    thresholds, precision, recall = _candidates(scores, targets)
    if kind == "max_f1":
        f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0)
        best = int(np.argmax(f1))
    else:
        met = (precision if kind == "precision" else recall) >= bound - 1e-12
        if not met.any():
            top = (precision if kind == "precision" else recall).max()
            raise UnreachableGoalError(f"operating point {goal}: no threshold reaches it on the validation split "
                                       f"(best {kind} {top:.3f}); choose a lower bound or max_f1")
        other = recall if kind == "precision" else precision
        best = int(np.flatnonzero(met)[np.argmax(other[met])])
    return {"goal": goal, "threshold": float(thresholds[best]),
            "val": metrics_at(scores, targets, float(thresholds[best]))}
