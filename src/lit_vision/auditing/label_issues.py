"""Label issues by confident learning: the ``prune_by_noise_rate`` rule, in numpy.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset Labels",
JAIR 70, 2021) finds examples whose given label is probably wrong from out-of-sample predicted probabilities
(cross-validated or held-out: probabilities of a model that trained on the example are overconfident in its label).
This module reimplements, from the paper and cleanlab's documentation, the rule that
``cleanlab.filter.find_label_issues(labels, pred_probs)`` applies with its defaults
(``filter_by="prune_by_noise_rate"``, ``frac_noise=1.0``, ``num_to_remove_per_class=None``,
``min_examples_per_class=1``, ``multi_label=False``) and its ranking by
``return_indices_ranked_by="self_confidence"``. cleanlab is AGPL-3.0 and is not used here; the tests compare
the flagged sets and rankings with it.

The rule, for N examples, K classes, given labels y and predicted probabilities p (N, K):

1. Per-class threshold t_k: the mean self-confidence p[i, k] over the examples labelled k (the paper's Sec. 3.1,
   Eq. 2). A class that no example is labelled with gets t_k = inf, so nothing is counted into it.
2. Confident joint C (K, K), C[given, true]: example i counts in row y_i, in column j when p[i, j] >= t_j (with a
   1e-6 tolerance) for exactly one class j, and in column argmax(p[i]) when it clears several thresholds (that
   argmax need not itself clear its threshold). Examples that clear no threshold are not counted. The diagonal is
   raised to at least 1, then C is calibrated (Sec. 3.1): each row scaled to the number of examples with
   that given label, the whole to N, and each row rounded to integers keeping its total (largest remainder).
3. Prune counts: C with its diagonal raised to at least ``MIN_EXAMPLES_PER_CLASS`` (only a diagonal that rounded
   to 0 changes); what a row's diagonal gained is taken evenly off the row's nonzero off-diagonal counts and the
   results are truncated to integers. As cleanlab does, the share is divided by (nonzero entries of the row,
   diagonal included) - 1, at least 1, so when the diagonal was 0 each off-diagonal loses a little more than an
   even share (this reproduces cleanlab rather than fixing it).
4. Pruning (the paper's "prune by noise rate", Sec. 3.2): for each given class k with more than
   ``MIN_EXAMPLES_PER_CLASS`` examples and each other class j, flag the n[k, j] examples labelled k with the largest
   margin p[i, j] - p[i, k]. An example is flagged when any j flags it.
5. Flagged examples whose given label is still the argmax of p (within 1e-6) are unflagged: the model agrees with
   the label, so it is not reported as an issue.

Flagged examples are ranked by self-confidence p[i, y_i], lowest (most likely mislabelled) first.

Ties: equal rounding remainders in step 2 (common: equal counts in a row of C give equal remainders), equal margins
in step 4 and equal self-confidences in the ranking are ordered by numpy's default ``np.argsort``, as cleanlab orders
them, so the flagged set and ranking are the same as cleanlab's under the same numpy on the same machine (checked
against cleanlab 2.9.0 on ~1,800 random problems with float64, float32, float16, rounded and one-hot probabilities;
tests/test_audit_label_issues.py keeps a few). That sort is not stable and numpy's SIMD versions of it differ
between CPUs, so on exact ties both libraries may pick a different one of the tied entries on another machine; a
stable sort would make this module reproducible across machines but disagreed with cleanlab on about one random
problem in six (by one or two flagged examples).

Deviations from cleanlab: only the defaults above are implemented; labels must be integers in [0, K), rows of
``probs`` must sum to 1 (within ``ROW_SUM_ATOL``) and N >= K.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: tolerance cleanlab uses when comparing probabilities with thresholds and with each other
TOLERANCE = 1e-6
#: thresholds are clipped from below to this, so an all-zero class column cannot make every example confident
THRESHOLD_FLOOR = 2 * TOLERANCE
#: a given class with this many examples or fewer is never pruned, and pruning leaves at least this many in it
MIN_EXAMPLES_PER_CLASS = 1
#: how far a row of ``probs`` may sum away from 1 (float32 and float16 softmax outputs do not sum to exactly 1)
ROW_SUM_ATOL = 1e-3


@dataclass(frozen=True, eq=False)
class LabelIssues:
    """What :func:`find_label_issues` found; every per-example array has length N, in the input's order."""

    #: True where the given label is probably wrong
    mask: np.ndarray
    #: indices of the flagged examples, most likely mislabelled (lowest self-confidence) first
    ranking: np.ndarray
    #: probs[i, labels[i]]: the predicted probability of the given label
    self_confidence: np.ndarray
    #: argmax of probs: the label a flagged example probably should have
    suggested: np.ndarray
    #: per-class thresholds (K,), see :func:`per_class_thresholds`
    thresholds: np.ndarray
    #: calibrated confident joint (K, K), rows = given label, columns = estimated true label
    confident_joint: np.ndarray

    @property
    def num_issues(self) -> int:
        return int(self.mask.sum())


def per_class_thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mean self-confidence per given class, shape (K,); inf for a class no example is labelled with."""
    labels, probs = _validated(labels, probs)
    return _thresholds(labels, probs)


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Calibrated confident joint (K, K) of ints: rows = given label, columns = estimated true label.

    Row k sums to the number of examples labelled k, so the matrix sums to N."""
    labels, probs = _validated(labels, probs)
    return _confident_joint(labels, probs, _thresholds(labels, probs))


def find_label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """Flag the examples whose given label is probably wrong (confident learning, prune by noise rate).

    ``probs`` must be out-of-sample predicted probabilities (N, K) and ``labels`` the given labels (N,) in [0, K)."""
    labels, probs = _validated(labels, probs)
    thresholds = _thresholds(labels, probs)
    joint = _confident_joint(labels, probs, thresholds)
    mask = _prune(labels, probs, _prune_counts(joint))
    mask &= _disagrees_with_label(labels, probs)
    self_confidence = probs[np.arange(len(labels)), labels]
    flagged = np.flatnonzero(mask)
    ranking = flagged[np.argsort(self_confidence[flagged])]
    return LabelIssues(mask=mask, ranking=ranking, self_confidence=self_confidence, suggested=probs.argmax(axis=1),
                       thresholds=thresholds, confident_joint=joint)


def _validated(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels)
    probs = np.asarray(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (examples, classes), got shape {probs.shape}")
    n, k = probs.shape
    if k < 2:
        raise ValueError(f"probs must have at least 2 classes (columns), got {k}")
    if np.issubdtype(probs.dtype, np.integer):
        probs = probs.astype(np.float64)  # one-hot predictions; float32 stays float32, as cleanlab computes with it
    elif not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(f"probs must be a float array, got dtype {probs.dtype}")
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    if len(labels) != n:
        raise ValueError(f"labels and probs must have the same length, got {len(labels)} labels and {n} rows")
    if n < k:
        raise ValueError(f"need at least as many examples as classes, got {n} examples for {k} classes")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers (class indices), got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= k:
        raise ValueError(f"labels must be in [0, {k}) for {k} classes, got values from {labels.min()} to "
                         f"{labels.max()}")
    if not np.isfinite(probs).all():
        raise ValueError(f"probs must be finite, got {int((~np.isfinite(probs)).sum())} NaN/inf values")
    if probs.min() < 0:
        raise ValueError(f"probs must be non-negative, got a minimum of {probs.min()}")
    row_error = np.abs(probs.sum(axis=1) - 1)
    if row_error.max() > ROW_SUM_ATOL:
        worst = int(row_error.argmax())
        raise ValueError(f"each row of probs must sum to 1 (probabilities, not logits): row {worst} sums to "
                         f"{probs[worst].sum():.6g}")
    return labels.astype(np.intp, copy=False), probs


def _thresholds(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    # np.mean per class (pairwise summation) rather than a bincount sum: the same floats as cleanlab's thresholds
    means = [probs[labels == c, c].mean() if (labels == c).any() else np.inf for c in range(probs.shape[1])]
    return np.maximum(np.array(means), THRESHOLD_FLOOR)


def _confident_joint(labels: np.ndarray, probs: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    k = probs.shape[1]
    confident = probs >= thresholds - TOLERANCE
    n_confident = confident.sum(axis=1)
    # one confident class: that class; several: the most probable class overall
    true_guess = np.where(n_confident > 1, probs.argmax(axis=1), confident.argmax(axis=1))
    counted = n_confident > 0
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (labels[counted], true_guess[counted]), 1)
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1))
    return _calibrated(joint, np.bincount(labels, minlength=k))


def _calibrated(joint: np.ndarray, label_counts: np.ndarray) -> np.ndarray:
    """Rows scaled to the label counts and the whole to N, then rounded keeping each row's total.

    The second scaling is a no-op up to the last bit, but that bit decides how values like 7.5 round, so the sum is
    taken in cleanlab's order: over a C-ordered (true, given) array (np.sum adds in memory order)."""
    by_true = np.ascontiguousarray(joint.T) / joint.sum(axis=1) * label_counts
    by_true = by_true / by_true.sum() * label_counts.sum()
    return np.stack([_round_keeping_sum(row) for row in by_true.T])


def _round_keeping_sum(values: np.ndarray) -> np.ndarray:
    """Round to ints whose sum is round(sum(values)), moving the entries with the largest remainders."""
    rounded = values.round()
    shortfall = int(np.round(values.sum().round() - rounded.sum()))
    if shortfall:
        order = np.argsort(values - rounded)
        # rounding up: largest remainders first; down: smallest first (ties: see the module docstring)
        chosen = order[::-1][:shortfall] if shortfall > 0 else order[:-shortfall]
        rounded[chosen] += np.sign(shortfall)
    return rounded.astype(np.int64)


def _prune_counts(joint: np.ndarray) -> np.ndarray:
    """How many examples to flag per (given, true) pair: the off-diagonal of ``joint`` after step 3 (module doc)."""
    diagonal = joint.diagonal()
    raised = np.maximum(diagonal, MIN_EXAMPLES_PER_CLASS)
    spread_over = np.maximum(np.count_nonzero(joint, axis=1) - 1, 1)
    counts = joint - ((raised - diagonal) / spread_over)[:, None]
    counts = np.maximum(counts, 0).astype(np.int64)  # truncation, as cleanlab's astype(int)
    np.fill_diagonal(counts, raised)
    return counts


def _prune(labels: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    mask = np.zeros(len(labels), dtype=bool)
    for given in range(probs.shape[1]):
        members = np.flatnonzero(labels == given)
        if len(members) <= MIN_EXAMPLES_PER_CLASS:
            continue
        for true in np.flatnonzero(counts[given] > 0):
            if true == given:
                continue
            margin = probs[members, true] - probs[members, given]
            mask[members[np.argsort(-margin)[:counts[given, true]]]] = True
    return mask


def _disagrees_with_label(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """True where some other class beats the given label's probability by more than the tolerance."""
    nudged = probs.copy()
    nudged[np.arange(len(labels)), labels] += TOLERANCE
    return nudged.argmax(axis=1) != labels
