"""Classify image files with one or more deployed models (:mod:`lit_vision.deploy.model`), and their ensembles.

Every model decodes the files as evaluation did (channels, size and — ``data=shards`` models — the centre crop
come from the model), predicts with its own
evaluation path (test-time augmentation included) and decides at its stored operating point. numpy only: the
backends import what they need.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lit_vision.data.image_folder import is_image_file
from lit_vision.deploy.ensembles import majority_vote, mean_probability
from lit_vision.deploy.model import DeployedModel
from lit_vision.deploy.operating_point import decide
from lit_vision.imaging import decode_image

MEAN, MAJORITY = "ensemble:mean", "ensemble:majority"


def unique_names(predictors: Sequence[DeployedModel]) -> None:
    """``task``, ``task#2``, …: two runs of one task get distinct column names."""
    seen: dict[str, int] = {}
    for p in predictors:
        seen[p.name] = seen.get(p.name, 0) + 1
        if seen[p.name] > 1:
            p.name = f"{p.name}#{seen[p.name]}"


def collect_images(items: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files, folders (recursive, image extensions) and globs → (paths, [(item, reason) for missing items])."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not files:
                missing.append((item, "folder holds no image files"))
            found += files
        elif path.is_file():
            found.append(path)
        else:
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                missing.append((item, "no such file, folder or matching glob"))
            found += matches
    return list(dict.fromkeys(p.resolve() for p in found)), missing


@dataclass
class Results:
    """Probabilities per model (and ensemble) for every image; NaN rows for images that could not be read."""

    images: list[Path]
    class_names: list[str] | None  # shared by every model, else None (no ensembles then)
    probs: dict[str, np.ndarray] = field(default_factory=dict)
    class_names_of: dict[str, list[str]] = field(default_factory=dict)
    unreadable: dict[Path, str] = field(default_factory=dict)
    thresholds: dict[str, float | None] = field(default_factory=dict)  # per model; ensembles decide by argmax

    def predicted(self, model: str) -> np.ndarray:
        """Class index per image for ``model`` (its operating point's threshold where it has one)."""
        probs = np.nan_to_num(self.probs[model])
        return decide(probs, self.thresholds.get(model))


def decode_for(paths: Sequence[Path], channels: int, size: tuple[int, int], unreadable: dict[Path, str],
               crop_fraction: float | None = None) -> tuple[np.ndarray, list[int]]:
    """Decode every readable file like the evaluation pipeline did (PIL convert + bilinear resize to the model's
    size; with ``crop_fraction``, the shorter side resized and the centre cropped)."""
    arrays, rows = [], []
    for i, path in enumerate(paths):
        if path in unreadable:
            continue
        try:
            arrays.append(decode_image(path, channels, size, crop_fraction))
            rows.append(i)
        except Exception as exc:  # noqa: BLE001 - every reason is reported per file, the rest still predicted
            unreadable[path] = f"{type(exc).__name__}: {exc}"
    empty = np.zeros((0, channels, *size), dtype=np.uint8)
    return (np.stack(arrays) if arrays else empty), rows


def predict_images(predictors: Sequence[DeployedModel], paths: Sequence[Path]) -> Results:
    names = predictors[0].class_names
    shared = names if all(p.class_names == names for p in predictors) else None
    res = Results(list(paths), shared)
    decoded: dict[tuple[int, tuple[int, int], float | None], tuple[np.ndarray, list[int]]] = {}
    for pred in predictors:  # models that decode alike share one decoding
        key = (pred.channels, pred.image_size, pred.crop_fraction)
        if key not in decoded:
            decoded[key] = decode_for(paths, pred.channels, pred.image_size, res.unreadable, pred.crop_fraction)
        images, rows = decoded[key]
        probs = np.full((len(paths), len(pred.class_names)), np.nan)
        if rows:
            probs[rows] = pred.predict(images)
        res.probs[pred.name] = probs
        res.class_names_of[pred.name] = list(pred.class_names)
        res.thresholds[pred.name] = pred.threshold
    bad = [i for i, p in enumerate(paths) if p in res.unreadable]
    for probs in res.probs.values():  # a file unreadable for one decoder is blanked for every model
        probs[bad] = np.nan
    if shared is not None and len(predictors) > 1:
        stack = np.stack([res.probs[p.name] for p in predictors])
        for name, combined in ((MEAN, mean_probability(stack)), (MAJORITY, majority_vote(stack))):
            res.probs[name] = combined
            res.class_names_of[name] = list(shared)
    return res
