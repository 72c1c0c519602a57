"""One deployed model for every consumer: ``predict``, ``export``'s parity check, ``serve`` and a training run's
own ``predictions.csv``.

A :class:`DeployedModel` is the evaluation path of a trained classifier, end to end: decode a file as training
decoded it (:func:`lit_vision.imaging.decode_image`: EXIF, channels, resize to the trained size — or, for a
``data=shards`` model, its evaluation view: shorter side resized, centre crop at ``crop_fraction``) → test-time
augmentation views → net → class probabilities → the decision at the run's stored operating point. Backends:

* a checkpoint (a run dir's ``checkpoints/best.ckpt``, a ``.ckpt``, an XGBoost run dir): PyTorch,
  :mod:`lit_vision.deploy.checkpoint_backend` (``ImageClassifier.eval_logits``, so TTA included);
* an exported ``.onnx`` (TTA baked into the graph): onnxruntime only (:func:`load_onnx`).

:func:`lit_vision.deploy.loader.load_model` picks the backend for a model argument.

This module imports neither torch nor Lightning, so the torch-free server install loads ``.onnx`` models with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lit_vision.deploy import onnx_schema
from lit_vision.deploy.operating_point import decide
from lit_vision.errors import LitVisionError
from lit_vision.imaging import decode_image
from lit_vision.runs.records import CHECKPOINT_DIR, CHECKPOINT_NAMES, RunDir

#: what a model argument may be, for messages
KINDS = "a training run dir, a .ckpt, a lit_vision.xgb run dir or an exported .onnx"
#: a run dir's checkpoints, in the order they are preferred


class ModelLoadError(LitVisionError):
    """The model to predict with could not be found or loaded; the message names the file and the fix."""


@dataclass
class DeployedModel:
    """A trained model as used after training: its classes, input format, threshold, and ``predict``: uint8
    ``(N, C, H, W)`` images at :attr:`image_size` → ``(N, K)`` class probabilities (TTA included)."""

    name: str
    class_names: list[str]
    channels: int
    image_size: tuple[int, int]
    predict: Callable[[np.ndarray], np.ndarray]
    backend: str  # "pytorch", "onnxruntime" or "xgboost"
    source: str = ""
    threshold: float | None = None  # binary runs: P(positive) at or above it is positive (operating_point.json)
    tta: dict[str, Any] = field(default_factory=lambda: {"hflip": False, "translate": 0})
    #: ``data=shards`` models: evaluated on the centre crop of the shorter side resized to image_size / crop_fraction;
    #: None (in-memory data, older checkpoints and exports): the whole image squashed to image_size
    crop_fraction: float | None = None

    def decode(self, source: Path | bytes) -> np.ndarray:
        """One file (path or bytes) → uint8 ``(C, H, W)`` exactly as evaluation saw it (squashed, or centre-cropped
        at :attr:`crop_fraction`)."""
        return decode_image(source, self.channels, self.image_size, self.crop_fraction)

    def decisions(self, probs: np.ndarray) -> np.ndarray:
        """Class index per row: the stored threshold on P(positive) for a binary run that has one, else argmax."""
        return decide(probs, self.threshold)

    def classify(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decoded uint8 images → (probabilities, decisions)."""
        probs = self.predict(images)
        return probs, self.decisions(probs)

    def metadata(self) -> dict[str, Any]:
        meta = {"model": self.name, "backend": self.backend, "classes": self.class_names,
                "input": {"channels": self.channels, "height": self.image_size[0], "width": self.image_size[1]},
                "tta": dict(self.tta), "threshold": self.threshold}
        if self.crop_fraction is not None:
            meta["input"]["crop_fraction"] = self.crop_fraction
        if self.threshold is not None:
            meta["positive_class"] = self.class_names[1]
        return meta

    def results(self, probs: np.ndarray) -> list[dict[str, Any]]:
        """Per image: the probability of each class, the predicted class, and the decision at the threshold."""
        out = []
        for p, index in zip(probs, self.decisions(probs)):
            entry: dict[str, Any] = {"probabilities": {c: float(v) for c, v in zip(self.class_names, p)},
                                     "predicted": self.class_names[int(index)]}
            if self.threshold is not None:
                entry["decision"] = {"positive": bool(index == 1), "class": self.class_names[int(index)],
                                     "threshold": self.threshold}
            out.append(entry)
        return out


# --- run dirs ------------------------------------------------------------------------------------------------
def checkpoint_of(spec: str | Path, where: str | None = None) -> Path:
    """A run dir (its best checkpoint) or a ``.ckpt`` file → the checkpoint; ``where`` names the argument."""
    path = Path(spec).expanduser()
    where = where or str(spec)
    if path.is_dir():
        ckpt = RunDir(path).checkpoint()
        if ckpt is None:
            raise ModelLoadError(f"{where}: this folder has no {CHECKPOINT_DIR}/{CHECKPOINT_NAMES[0]} or "
                                 f"{CHECKPOINT_NAMES[1]} (was the run killed before its first checkpoint?); pass "
                                 f"{KINDS}")
        return ckpt
    if not path.is_file():
        raise ModelLoadError(f"{where}: no such file or folder; pass {KINDS}")
    return path


def stored_threshold(run_dir: Path, num_classes: int) -> float | None:
    """The operating point's threshold a binary training run stored (``operating_point.json``), if any."""
    run = RunDir(run_dir)
    path = run.operating_point_file
    if num_classes != 2 or not path.is_file():
        return None
    try:
        return float(run.operating_point()["threshold"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{path} is damaged ({type(exc).__name__}: {exc}); delete it to decide at argmax, "
                             "or retrain with report.operating_point=…") from exc


# --- backends ------------------------------------------------------------------------------------------------
def load_onnx(path: Path, where: str | None = None, batch_size: int = 256) -> DeployedModel:
    """An exported ``.onnx`` (lit_vision.export) with onnxruntime alone."""
    where = where or str(path)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelLoadError(f"{where}: serving an .onnx needs onnxruntime: pip install onnxruntime") from exc
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 — onnxruntime's errors for truncated/foreign files vary by version
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
        raise ModelLoadError(f"{where}: damaged or not an ONNX model ({type(exc).__name__}: {first[:200]}); "
                             "export it again with python -m lit_vision.export <run dir>") from exc
    try:
        info = onnx_schema.OnnxModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    except onnx_schema.SchemaError as exc:
        raise ModelLoadError(f"{where}: not a lit_vision export ({exc}); export it with "
                             "python -m lit_vision.export <run dir>") from exc

    def predict(images: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(images, dtype=np.uint8)
        out = [session.run(None, {onnx_schema.INPUT_NAME: images[i:i + batch_size]})[0]
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(info.class_names)), np.float32)

    return DeployedModel(path.stem, info.class_names, info.channels, (info.height, info.width), predict,
                         "onnxruntime", str(path), info.threshold, dict(info.tta), info.crop_fraction)
