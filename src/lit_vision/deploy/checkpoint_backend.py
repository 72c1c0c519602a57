"""The PyTorch backend of :class:`~lit_vision.deploy.model.DeployedModel`: a lit_vision checkpoint (run dir or
``.ckpt``) or an XGBoost head on a checkpoint's embeddings.

A checkpoint's probabilities are ``ImageClassifier.probabilities(ImageClassifier.eval_logits(x))``: the model's own
evaluation path, test-time augmentation included — what its test metrics were computed with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_vision.deploy.model import DeployedModel, ModelLoadError, checkpoint_of, stored_threshold
from lit_vision.models import boosting
from lit_vision.runs.paths import run_dir_of_checkpoint, run_name
from lit_vision.training import recipes
from lit_vision.training.checkpoints import CheckpointError, load_classifier


@torch.no_grad()
def probabilities(model: torch.nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """``(N, K)`` class probabilities of a classifier (test-time augmentation included) for uint8 images (each batch
    copied: ``images`` may be a read-only memory map, which torch must not wrap)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = [model.probabilities(model.eval_logits(torch.from_numpy(np.array(images[i:i + batch_size])).to(device)))
           .float().cpu() for i in range(0, len(images), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, len(model.class_names)), np.float32)


def input_format(model: Any) -> tuple[int, tuple[int, int]]:
    spec = model.hparams.input_spec
    return int(spec["channels"]), (int(spec["image_size"][0]), int(spec["image_size"][1]))


def crop_fraction_of(model: Any) -> float | None:
    """The evaluation view's centre crop a ``data=shards`` checkpoint stores (``input_spec["crop_fraction"]``);
    None for the in-memory data and for checkpoints written before the key existed: their images are squashed."""
    fraction = model.hparams.input_spec.get("crop_fraction")
    return None if fraction is None else float(fraction)


def tta_of(model: Any) -> dict[str, Any]:
    """The test-time augmentation ``eval_logits`` applies: the model's setting (``evaluate tta=…`` may override
    the checkpoint's), else the checkpoint's ``model.tta``."""
    return recipes.check_tta(getattr(model, "tta", None) or model.hparams.get("tta"))


def from_classifier(model: Any, name: str = "", source: str = "", threshold: float | None = None,
                    batch_size: int = 256) -> DeployedModel:
    """An in-memory :class:`ImageClassifier` (e.g. a training run's best weights) as a :class:`DeployedModel`."""
    channels, size = input_format(model)

    def predict(images: np.ndarray) -> np.ndarray:
        return probabilities(model, images, batch_size)

    return DeployedModel(name, list(model.class_names), channels, size, predict, "pytorch", source, threshold,
                         tta_of(model), crop_fraction_of(model))


def load_checkpoint(ckpt: Path, where: str, device: str = "cpu", batch_size: int = 256) -> DeployedModel:
    try:
        model = load_classifier(ckpt, map_location=device)
    except CheckpointError as exc:
        raise ModelLoadError(f"{where}: {exc}") from exc
    run_dir = run_dir_of_checkpoint(ckpt)
    return from_classifier(model, run_name(run_dir), str(ckpt),
                           stored_threshold(run_dir, len(model.class_names)), batch_size)


def load_xgboost(run_dir: Path, where: str, device: str = "cpu", batch_size: int = 256) -> DeployedModel:
    clf, meta = boosting.load_booster(run_dir)
    try:
        model = load_classifier(meta["ckpt_path"], map_location=device)
    except CheckpointError as exc:
        raise ModelLoadError(f"{where}: the XGBoost run's source checkpoint: {exc}") from exc

    def predict(images: np.ndarray) -> np.ndarray:
        return clf.predict_proba(boosting.embeddings(model, images, batch_size, device))

    channels, size = input_format(model)
    return DeployedModel(run_name(run_dir), list(meta["class_names"]), channels, size, predict, "xgboost",
                         str(run_dir), crop_fraction=crop_fraction_of(model))


def load(path: Path, where: str, device: str = "cpu", batch_size: int = 256) -> DeployedModel:
    """A ``.ckpt``, a training run dir (its best checkpoint) or an XGBoost run dir (or its model file)."""
    if path.is_file() and path.name == boosting.MODEL_FILE:
        path = path.parent
    if path.is_dir() and boosting.is_booster_dir(path):
        return load_xgboost(path, where, device, batch_size)
    return load_checkpoint(checkpoint_of(path, where), where, device, batch_size)
