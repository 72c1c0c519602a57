"""Confident learning's label-issue finder (lit_vision.auditing.label_issues), by hand and against cleanlab."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

from lit_vision.auditing.label_issues import confident_joint, find_label_issues, per_class_thresholds

# 9 examples, 3 classes, thresholds [0.5, 0.4667, 0.4]. X (index 2, labelled 0) clears the thresholds of classes 1
# and 2 and is counted at its argmax, 1; Y (index 5, labelled 1) clears only class 2's; W (index 8, labelled 2)
# clears only its own class's threshold although class 0 is its argmax, so it is counted as correctly labelled.
HAND_LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
HAND_PROBS = np.array([
    [0.7, 0.2, 0.1], [0.7, 0.2, 0.1], [0.1, 0.5, 0.4],  # X
    [0.2, 0.5, 0.3], [0.2, 0.5, 0.3], [0.1, 0.4, 0.5],  # Y
    [0.2, 0.4, 0.4], [0.2, 0.4, 0.4], [0.45, 0.15, 0.4],  # W
])
X, Y, W = 2, 5, 8


def noisy_problem(seed: int, n: int, k: int, noise: float, *, shift: float = 3.0,
                  imbalance: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Softmax of Gaussian logits that favour the true class by ``shift``; a ``noise`` fraction of the labels is
    changed to another class. Returns (labels, probs, true labels)."""
    rng = np.random.default_rng(seed)
    prior = rng.dirichlet(np.full(k, 0.5 if imbalance else 50.0))
    true = rng.choice(k, n, p=prior)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), true] += rng.normal(shift, 1.0, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = (true[flip] + rng.integers(1, k, flip.sum())) % k
    return labels, probs, true


def never_confident(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """4 classes; every example labelled 3 puts ~0.8 on class 0, more than class 0's own examples (~0.6) do, so no
    example labelled 3 is counted as truly 3 (the confident joint's diagonal entry is only the floor of 1)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), [60, 50, 50, 40])
    centres = np.array([[0.6, 0.15, 0.15, 0.1], [0.1, 0.8, 0.05, 0.05], [0.1, 0.05, 0.8, 0.05],
                        [0.8, 0.04, 0.04, 0.12]])
    probs = np.clip(centres[labels] + rng.normal(0.0, 0.02, (len(labels), 4)), 0.001, None)
    return labels, probs / probs.sum(axis=1, keepdims=True)


def test_thresholds_are_mean_self_confidence_per_class() -> None:
    np.testing.assert_allclose(per_class_thresholds(HAND_LABELS, HAND_PROBS), [0.5, 1.4 / 3, 0.4])


def test_class_without_examples_gets_an_unreachable_threshold() -> None:
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.1, 0.7]])
    thresholds = per_class_thresholds(labels, probs)
    assert thresholds[2] == np.inf
    assert confident_joint(labels, probs)[:, 2].sum() == 0


def test_confident_joint_counts_single_confident_class_else_argmax() -> None:
    # X: two confident classes -> its argmax (1); Y: one (2); W: one, its own class (2), not its argmax (0)
    np.testing.assert_array_equal(confident_joint(HAND_LABELS, HAND_PROBS), [[2, 1, 0], [0, 2, 1], [0, 0, 3]])


def test_confident_joint_rows_sum_to_label_counts() -> None:
    labels, probs, _ = noisy_problem(0, 500, 5, 0.2, imbalance=True)
    joint = confident_joint(labels, probs)
    assert joint.dtype.kind == "i"
    np.testing.assert_array_equal(joint.sum(axis=1), np.bincount(labels, minlength=5))


def test_hand_made_issues_ranking_and_suggestions() -> None:
    issues = find_label_issues(HAND_LABELS, HAND_PROBS)
    assert np.flatnonzero(issues.mask).tolist() == [X, Y]
    # W's argmax disagrees with its label but the model is not confident in class 0: not an issue
    assert not issues.mask[W]
    assert issues.ranking.tolist() == [X, Y]  # self-confidence 0.1 < 0.4
    np.testing.assert_allclose(issues.self_confidence[[X, Y, W]], [0.1, 0.4, 0.4])
    assert issues.suggested[[X, Y]].tolist() == [1, 2]
    assert issues.num_issues == 2


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_one_clearly_mislabelled_example_is_flagged(dtype: type) -> None:
    labels = np.array([0] * 6 + [1] * 6 + [2] * 6)
    predicted = labels.copy()
    predicted[4] = 2  # labelled 0, the model is sure it is a 2
    probs = np.eye(3)[predicted].astype(dtype)
    if dtype is not np.int64:
        probs = (0.9 * probs + 0.1 / 3).astype(dtype)
    issues = find_label_issues(labels, probs)
    assert np.flatnonzero(issues.mask).tolist() == [4]
    assert issues.suggested[4] == 2


def test_clean_labels_flag_nothing() -> None:
    labels, probs, true = noisy_problem(1, 400, 4, 0.0, shift=6.0)
    assert (probs.argmax(axis=1) == labels).all()  # the model agrees with every label
    issues = find_label_issues(labels, probs)
    assert not issues.mask.any()
    assert issues.ranking.size == 0


def test_flags_the_noisy_labels_of_a_good_model() -> None:
    labels, probs, true = noisy_problem(0, 2000, 10, 0.1, shift=5.0)
    issues = find_label_issues(labels, probs)
    wrong = labels != true
    assert (wrong & issues.mask).sum() / issues.mask.sum() >= 0.9  # precision (0.98 for this seed)
    assert (wrong & issues.mask).sum() / wrong.sum() >= 0.8  # recall (0.91)
    # the ranking is the flagged set by ascending self-confidence, and the model agrees with no flagged label
    assert sorted(issues.ranking.tolist()) == np.flatnonzero(issues.mask).tolist()
    assert (np.diff(issues.self_confidence[issues.ranking]) >= 0).all()
    assert (issues.suggested[issues.mask] != labels[issues.mask]).all()


def test_class_with_no_confident_examples_is_flagged_as_its_usual_confusion() -> None:
    labels, probs = never_confident(0)
    joint = confident_joint(labels, probs)
    assert joint[3, 3] <= 1 and joint[3, 0] >= 38
    issues = find_label_issues(labels, probs)
    assert 38 <= issues.mask[labels == 3].sum() <= 40
    assert (issues.suggested[issues.mask] == 0).all()
    assert not issues.mask[labels != 3].any()


PROBS = np.full((4, 2), 0.5)
LABELS = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(("labels", "probs", "message"), [
    (LABELS, np.full(4, 0.5), "2-D array"),
    (LABELS, np.ones((4, 1)), "at least 2 classes"),
    (LABELS, PROBS.astype(str), "float array"),
    (LABELS[:, None], PROBS, "1-D array"),
    (LABELS[:3], PROBS, "same length, got 3 labels and 4 rows"),
    (np.array([0, 1]), np.full((2, 3), 1 / 3), "at least as many examples as classes"),
    (LABELS.astype(float), PROBS, "labels must be integers"),
    (np.array([0, 1, 2, 1]), PROBS, r"labels must be in \[0, 2\)"),
    (np.array([0, 1, -1, 1]), PROBS, r"labels must be in \[0, 2\)"),
    (LABELS, np.array([[0.5, 0.5], [np.nan, 0.5], [0.5, 0.5], [0.5, 0.5]]), "finite"),
    (LABELS, np.array([[1.5, -0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), "non-negative"),
    (LABELS, np.array([[2.0, 1.0], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]), "row 0 sums to 3"),
])
@pytest.mark.parametrize("function", [find_label_issues, confident_joint, per_class_thresholds])
def test_invalid_inputs_raise(function, labels: np.ndarray, probs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        function(labels, probs)


def _problems() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    problems = {}
    for seed in range(3):
        problems[f"10-classes-10%-noise-{seed}"] = noisy_problem(seed, 2000, 10, 0.1)[:2]
        problems[f"binary-{seed}"] = noisy_problem(seed, 1000, 2, 0.2)[:2]
        problems[f"3-classes-imbalanced-{seed}"] = noisy_problem(seed, 300, 3, 0.15, imbalance=True)[:2]
        problems[f"10-classes-imbalanced-small-{seed}"] = noisy_problem(seed, 100, 10, 0.3, imbalance=True)[:2]
        problems[f"no-confident-examples-{seed}"] = never_confident(seed)
    labels, probs, _ = noisy_problem(0, 2000, 10, 0.1)
    problems["float32"] = labels, probs.astype(np.float32)
    # probabilities rounded to 2 decimals: many tied margins and self-confidences
    rounded = np.round(probs, 2)
    rounded[np.arange(len(labels)), probs.argmax(axis=1)] += 1 - rounded.sum(axis=1)
    problems["rounded-ties"] = labels, rounded
    labels, probs, _ = noisy_problem(1, 500, 5, 0.2)
    problems["class-never-given"] = np.where(labels == 2, 3, labels), probs
    problems["one-example-class"] = np.where(labels == 2, 3, labels), probs
    problems["one-example-class"][0][np.flatnonzero(labels == 2)[0]] = 2
    return problems


PROBLEMS = _problems()


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_matches_cleanlab(name: str) -> None:
    """Same flagged set, ranking, thresholds and confident joint as cleanlab's default (prune_by_noise_rate)."""
    filter_ = pytest.importorskip("cleanlab.filter")
    count = pytest.importorskip("cleanlab.count")
    labels, probs = PROBLEMS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cleanlab warns about classes too small to prune
        expected = filter_.find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1)
        expected_ranking = filter_.find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1,
                                                     return_indices_ranked_by="self_confidence")
        expected_joint = count.compute_confident_joint(labels, probs)
        expected_thresholds = count.get_confident_thresholds(labels, probs)
    issues = find_label_issues(labels, probs)
    assert expected.any()
    np.testing.assert_array_equal(issues.mask, expected)
    np.testing.assert_array_equal(issues.ranking, expected_ranking)
    np.testing.assert_array_equal(issues.confident_joint, expected_joint)
    given = np.bincount(labels, minlength=probs.shape[1]) > 0  # cleanlab's threshold for an absent class is 2
    np.testing.assert_array_equal(issues.thresholds[given], expected_thresholds[given])
    assert (issues.thresholds[~given] == np.inf).all()


def test_does_not_import_cleanlab() -> None:
    """cleanlab is AGPL-3.0 and only a test reference: lit_vision must not import it."""
    code = ("import sys, numpy as np\n"
            "from lit_vision.auditing.label_issues import find_label_issues\n"
            "find_label_issues(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]))\n"
            "print(sorted(m for m in sys.modules if m.partition('.')[0] == 'cleanlab'))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
