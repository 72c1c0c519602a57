"""Classify images with trained models: neural checkpoints, XGBoost heads, and their ensembles.

A :class:`Predictor` turns uint8 ``(N, C, H, W)`` images into ``(N, K)`` probabilities and knows the input
format it needs (channels and size come from the checkpoint), so every image is preprocessed as in training.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lit_vision.data.image_folder import decode_image, is_image_file
from lit_vision.deploy.ensembles import majority_vote, mean_probability
from lit_vision.deploy.operating_point import OPERATING_POINT_FILE, decide
from lit_vision.errors import LitVisionError
from lit_vision.models import boosting
from lit_vision.runs.paths import run_dir_of_checkpoint, run_name
from lit_vision.training.checkpoints import load_classifier

MEAN, MAJORITY = "ensemble:mean", "ensemble:majority"


@dataclass
class Predictor:
    """One model: its name, classes, input format and a function uint8 (N, C, H, W) → probabilities (N, K)."""

    name: str
    class_names: list[str]
    channels: int
    image_size: tuple[int, int]
    predict: Callable[[np.ndarray], np.ndarray]
    source: str = ""
    threshold: float | None = None  # binary runs: P(positive) at or above it is positive (operating_point.json)


def _input_format(model: torch.nn.Module) -> tuple[int, tuple[int, int]]:
    spec = model.hparams.input_spec
    return int(spec["channels"]), (int(spec["image_size"][0]), int(spec["image_size"][1]))


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``(N, K)`` class probabilities of a classifier (test-time augmentation included) for uint8 images."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model.probabilities(model.eval_logits(torch.from_numpy(np.asarray(images[i:i + batch_size])).to(device)))
           .cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy()


def _neural(ckpt: Path, device: str, batch_size: int) -> Predictor:
    model = load_classifier(ckpt, map_location=device)

    def predict(images: np.ndarray) -> np.ndarray:
        return probabilities(model, images, batch_size)

    channels, size = _input_format(model)
    run_dir = run_dir_of_checkpoint(ckpt)
    return Predictor(run_name(run_dir), list(model.class_names), channels, size, predict, str(ckpt),
                     stored_threshold(run_dir, len(model.class_names)))


def stored_threshold(run_dir: Path, num_classes: int) -> float | None:
    """The operating point's threshold a binary training run stored (``operating_point.json``), if any."""
    path = run_dir / OPERATING_POINT_FILE
    if num_classes != 2 or not path.is_file():
        return None
    return float(json.loads(path.read_text())["threshold"])


def _xgboost(run_dir: Path, device: str, batch_size: int) -> Predictor:
    clf, meta = boosting.load_booster(run_dir)
    model = load_classifier(meta["ckpt_path"], map_location=device)

    def predict(images: np.ndarray) -> np.ndarray:
        return clf.predict_proba(boosting.embeddings(model, images, batch_size, device))

    channels, size = _input_format(model)
    return Predictor(run_name(run_dir), list(meta["class_names"]), channels, size, predict, str(run_dir))


def load_predictor(spec: str, device: str = "cpu", batch_size: int = 256) -> Predictor:
    """A ``.ckpt`` file, a training run dir or an XGBoost run dir → :class:`Predictor`."""
    path = Path(spec).expanduser()
    if path.is_file() and path.name == boosting.MODEL_FILE:
        path = path.parent
    if path.is_dir():
        if boosting.is_booster_dir(path):
            return _xgboost(path, device, batch_size)
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return _neural(path / "checkpoints" / name, device, batch_size)
        raise LitVisionError(f"--model {spec}: folder has neither checkpoints/best.ckpt nor {boosting.MODEL_FILE}; "
                             "pass a training run dir, an XGBoost run dir or a .ckpt file")
    if path.exists():
        return _neural(path, device, batch_size)
    raise LitVisionError(f"--model {spec}: no such file or folder")


def unique_names(predictors: Sequence[Predictor]) -> None:
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


def decode_for(paths: Sequence[Path], channels: int, size: tuple[int, int],
               unreadable: dict[Path, str]) -> tuple[np.ndarray, list[int]]:
    """Decode every readable file like the data pipeline did (PIL convert + bilinear resize to the model's size)."""
    arrays, rows = [], []
    for i, path in enumerate(paths):
        if path in unreadable:
            continue
        try:
            arrays.append(decode_image(path, channels, size))
            rows.append(i)
        except Exception as exc:  # noqa: BLE001 - every reason is reported per file, the rest still predicted
            unreadable[path] = f"{type(exc).__name__}: {exc}"
    empty = np.zeros((0, channels, *size), dtype=np.uint8)
    return (np.stack(arrays) if arrays else empty), rows


def predict_images(predictors: Sequence[Predictor], paths: Sequence[Path]) -> Results:
    names = predictors[0].class_names
    shared = names if all(p.class_names == names for p in predictors) else None
    res = Results(list(paths), shared)
    decoded: dict[tuple[int, tuple[int, int]], tuple[np.ndarray, list[int]]] = {}
    for pred in predictors:
        key = (pred.channels, pred.image_size)
        if key not in decoded:
            decoded[key] = decode_for(paths, pred.channels, pred.image_size, res.unreadable)
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
