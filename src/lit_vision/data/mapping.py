"""Target mapping: multiclass as is, one-vs-rest, keep-a-subset-and-relabel, balancing, class weights.

Pure functions on label arrays so they are easy to test and to reuse with any source.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lit_vision.checks import build_settings, flag, positive_int
from lit_vision.data.arrays import ImageArrays
from lit_vision.errors import ConfigError

#: the splits ``data.mapping.per_class`` can size (balancing undersamples train and test)
BALANCED_SPLITS = ("train", "test")


@dataclass(frozen=True)
class LabelMapping:
    """How source classes become training targets.

    positive: one class name (or a list) that becomes label 1, every other class label 0.
    classes: keep only these classes; a list keeps their order, a mapping ``{name: new_label}`` relabels.
    balance: undersample every class of train (and test) to the smallest class count, seeded.
    per_class: optional ``{split: n}``: with ``balance``, keep exactly n rows per class in that split
        instead of the smallest count (notebook 004's split sizes); ignored when ``balance`` is false, so
        turning balancing off is one switch.
    """

    positive: str | Sequence[str] | None = None
    negative_name: str | None = None
    classes: Sequence[str] | Mapping[str, int] | None = None
    balance: bool = False
    per_class: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        """The checks that need no data (class names are checked against the data when it is mapped)."""
        if self.positive is not None and not _names(self.positive, allow_one=True):
            raise ConfigError(f"data.mapping.positive={self.positive!r} must be a class name or a list of class "
                              "names (or null)")
        if self.negative_name is not None and not isinstance(self.negative_name, str):
            raise ConfigError(f"data.mapping.negative_name={self.negative_name!r} must be a name (or null)")
        if self.classes is not None:
            if isinstance(self.classes, Mapping):
                for name, new in self.classes.items():
                    if isinstance(new, bool) or not isinstance(new, (int, np.integer)) or new < 0:
                        raise ConfigError(f"data.mapping.classes.{name}={new!r} must be a new label 0..K-1")
            elif not _names(self.classes, allow_one=False):
                raise ConfigError(f"data.mapping.classes={self.classes!r} must be a list of class names or a "
                                  "mapping {name: new_label} (or null)")
        flag(self.balance, "data.mapping.balance")
        if self.per_class is not None:
            if not isinstance(self.per_class, Mapping):
                raise ConfigError(f"data.mapping.per_class={self.per_class!r} must be a mapping {{split: rows}}, "
                                  "e.g. {train: 1000, test: 100}")
            for split, n in self.per_class.items():
                if split not in BALANCED_SPLITS:
                    raise ConfigError(f"data.mapping.per_class.{split}: only {list(BALANCED_SPLITS)} are balanced; "
                                      "remove it")
                positive_int(n, f"data.mapping.per_class.{split}")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> LabelMapping:
        """Build from the ``data.mapping`` mapping; an unknown key is a :class:`ConfigError` naming it."""
        return build_settings(cls, values, "data.mapping", "a mapping setting")


def _names(value: Any, allow_one: bool) -> bool:
    """A class name (when ``allow_one``) or a non-empty list of them."""
    if isinstance(value, str):
        return allow_one
    return (isinstance(value, Sequence) and len(value) > 0
            and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value))


def _check_names(wanted: Sequence[str], available: Sequence[str], key: str) -> None:
    unknown = [w for w in wanted if w not in available]
    if unknown:
        raise ConfigError(
            f"{key}: unknown class name(s) {unknown}; the data has classes {list(available)}. "
            f"Fix the names in data.mapping.{key.split('.')[-1]}.")


def one_vs_rest(labels: np.ndarray, class_names: Sequence[str], positive: str | Sequence[str],
                negative_name: str | None = None) -> tuple[np.ndarray, list[str]]:
    positives = [positive] if isinstance(positive, str) else list(positive)
    _check_names(positives, class_names, "data.mapping.positive")
    pos_ids = [list(class_names).index(p) for p in positives]
    binary = np.isin(labels, pos_ids).astype(np.int64)
    pos_name = "+".join(positives)
    return binary, [negative_name or f"not_{pos_name}", pos_name]


def select_classes(labels: np.ndarray, class_names: Sequence[str],
                   classes: Sequence[str] | Mapping[str, int]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Keep the rows of ``classes`` and relabel them. Returns (row index, new labels, new class names)."""
    mapping = dict(classes) if isinstance(classes, Mapping) else {c: i for i, c in enumerate(classes)}
    _check_names(list(mapping), class_names, "data.mapping.classes")
    new_ids = sorted(set(mapping.values()))
    if new_ids != list(range(len(new_ids))):
        raise ConfigError(f"data.mapping.classes: new labels must be 0..K-1, got {sorted(mapping.values())}")
    names = [""] * len(new_ids)
    for name, new in mapping.items():
        names[new] = name if not names[new] else f"{names[new]}+{name}"
    lookup = np.full(len(class_names), -1, dtype=np.int64)
    for name, new in mapping.items():
        lookup[list(class_names).index(name)] = new
    relabelled = lookup[labels]
    keep = np.flatnonzero(relabelled >= 0)
    return keep, relabelled[keep], names


def undersample(labels: np.ndarray, seed: int, per_class: int | None = None) -> np.ndarray:
    """Seeded random undersampling: every class keeps ``per_class`` rows (default: the smallest count)."""
    counts = np.bincount(labels)
    present = np.flatnonzero(counts)
    n = int(counts[present].min()) if per_class is None else int(per_class)
    if per_class is not None and n > counts[present].min():
        raise ConfigError(f"data.mapping.per_class={n} but the smallest class has only "
                          f"{int(counts[present].min())} rows; lower it.")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(np.flatnonzero(labels == c), size=n, replace=False) for c in present]
    return np.sort(np.concatenate(picked))


def class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """Inverse-frequency weights normalised to mean 1 ("balanced" in scikit-learn's sense)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return [float(w) for w in weights]


def apply_mapping(arrays: ImageArrays, mapping: LabelMapping, split: str, seed: int) -> ImageArrays:
    """Apply subset/one-vs-rest relabelling and optional balancing to one split."""
    out = arrays
    if mapping.classes is not None:
        keep, labels, names = select_classes(out.labels, out.class_names, mapping.classes)
        out = out.subset(keep).with_labels(labels, names)
    if mapping.positive is not None:
        labels, names = one_vs_rest(out.labels, out.class_names, mapping.positive, mapping.negative_name)
        out = out.with_labels(labels, names)
    if mapping.balance and split in ("train", "test"):
        cap = (mapping.per_class or {}).get(split)
        out = out.subset(undersample(out.labels, seed, cap))
    return out
