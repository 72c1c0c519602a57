"""A trained classifier as an ONNX model that needs nothing but onnxruntime: uint8 images in, probabilities out.

The graph is the checkpoint's evaluation path: it takes ``uint8 (N, C, H, W)`` at the trained size (no resizing:
the caller decodes and resizes as evaluation did), and runs ``ImageClassifier.eval_logits`` — the test-time
augmentation views of ``model.tta`` (flips and reflect-padded pixel shifts, plain tensor ops, the same
``recipes.tta_views`` code), normalisation and the net, logits averaged over the views exactly as evaluation
averages them — then ``ImageClassifier.probabilities``; the batch axis is dynamic. Class names, the input spec
(with a ``data=shards`` model's ``crop_fraction``, so the torch-free server crops as evaluation did), the TTA
setting and (binary runs) the operating point's threshold travel in the model's metadata
(:mod:`lit_vision.deploy.onnx_schema`). Every export checks itself against the checkpoint backend of
:mod:`lit_vision.deploy.model` (the path the run's test metrics and ``predictions.csv`` came from) on the run's own
test images (:func:`check_parity`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_vision.deploy import checkpoint_backend
from lit_vision.deploy.model import DeployedModel, checkpoint_of, stored_threshold
from lit_vision.deploy.onnx_schema import INPUT_NAME, OUTPUT_NAME, OnnxModelInfo
from lit_vision.errors import LitVisionError
from lit_vision.runs.paths import run_dir_of_checkpoint, run_name
from lit_vision.runs.records import RunDir
from lit_vision.training.checkpoints import CheckpointError, load_classifier

log = logging.getLogger("lit_vision")

#: largest |ONNX − checkpoint| probability an export may differ by
PARITY_TOLERANCE = 1e-4


class ExportError(LitVisionError):
    """The export could not be written or does not compute what the checkpoint computes."""


class ProbabilityGraph(torch.nn.Module):
    """The classifier as evaluated and deployed: uint8 images → TTA views → normalised floats → net → mean logits
    → class probabilities (``model.probabilities(model.eval_logits(images))``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.probabilities(self.model.eval_logits(images))


def model_info(model: Any, threshold: float | None, source: Path) -> OnnxModelInfo:
    """What the export's metadata says about ``model`` (loaded from ``source``)."""
    spec = model.hparams.input_spec
    return OnnxModelInfo(class_names=list(model.class_names), channels=int(spec["channels"]),
                         height=int(spec["image_size"][0]), width=int(spec["image_size"][1]),
                         mean=[float(v) for v in spec["mean"]], std=[float(v) for v in spec["std"]],
                         tta=checkpoint_backend.tta_of(model), model=str(model.net_name),
                         source_checkpoint=str(source), threshold=threshold,
                         crop_fraction=checkpoint_backend.crop_fraction_of(model))


def export_onnx(model: Any, ckpt: Path, out: Path, threshold: float | None) -> Path:
    """Write ``model`` (loaded from ``ckpt``) to ``out``: ONNX, dynamic batch, metadata with ``threshold``."""
    import onnx

    spec = model.hparams.input_spec
    example = torch.zeros(2, int(spec["channels"]), *map(int, spec["image_size"]), dtype=torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(ProbabilityGraph(model).eval(), (example,), str(out), input_names=[INPUT_NAME],
                      output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), dynamo=True,
                      external_data=False)
    proto = onnx.load(str(out))
    for key, value in model_info(model, threshold, ckpt).to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    return out


def parity_images(ckpt: Path, spec: Any, count: int = 256) -> tuple[np.ndarray, str]:
    """Up to ``count`` of the run's own test images (from its saved config), else random images of the right
    shape (a lone checkpoint has no data config); with where they came from."""
    config = RunDir(run_dir_of_checkpoint(ckpt)).config_file
    if config.is_file():
        from omegaconf import OmegaConf

        from lit_vision.training.builders import build_datamodule

        try:
            dm = build_datamodule(OmegaConf.load(config))
            if dm.test_set is not None:
                return np.asarray(dm.test_set.images[:count]), f"{min(count, len(dm.test_set.images))} test images"
        except Exception as exc:  # noqa: BLE001 — the data may have moved; random images still check the graph
            log.warning("parity check: the run's test data could not be read (%s); using random images", exc)
    rng = np.random.default_rng(0)
    shape = (count, int(spec["channels"]), *map(int, spec["image_size"]))
    return rng.integers(0, 256, shape, dtype=np.uint8), f"{count} random images (no test data found)"


def check_parity(onnx_path: Path, reference: DeployedModel, images: np.ndarray) -> float:
    """Max |Δ probability| between the export (onnxruntime) and ``reference`` (the checkpoint backend, TTA
    included) on ``images``; raises above :data:`PARITY_TOLERANCE`."""
    from lit_vision.deploy.model import load_onnx

    exported = load_onnx(onnx_path)
    got, got_decisions = exported.classify(images)
    want, want_decisions = reference.classify(images)
    delta = float(np.abs(got - want).max()) if len(images) else 0.0
    if not delta <= PARITY_TOLERANCE:
        raise ExportError(f"{onnx_path}: onnxruntime differs from the checkpoint's evaluation (PyTorch, test-time "
                          f"augmentation included) by {delta:.2e} in probability (allowed {PARITY_TOLERANCE:.0e}); "
                          "the file was removed")
    flipped = int((got_decisions != want_decisions).sum())
    if flipped:  # only possible for a probability within the tolerance of the threshold
        log.warning("parity check: %d of %d images sit at the threshold and are decided differently by onnxruntime",
                    flipped, len(images))
    return delta


def export(spec: str | Path, out: str | Path | None = None, fmt: str = "onnx") -> dict[str, Any]:
    """Export, verify, and describe: the ``python -m lit_vision.export`` command's work."""
    if fmt != "onnx":
        raise ExportError(f"--format {fmt}: only onnx is supported")
    ckpt = checkpoint_of(spec)
    run_dir = run_dir_of_checkpoint(ckpt)
    out = Path(out) if out else run_dir / "model.onnx"
    try:
        model = load_classifier(ckpt, map_location="cpu").float().eval()
    except CheckpointError as exc:
        raise ExportError(f"{spec}: {exc}") from exc
    threshold = stored_threshold(run_dir, len(model.class_names))
    reference = checkpoint_backend.from_classifier(model, run_name(run_dir), str(ckpt), threshold)
    path = export_onnx(model, ckpt, out, threshold)
    images, origin = parity_images(ckpt, model.hparams.input_spec)
    try:
        delta = check_parity(path, reference, images)
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    return {"path": path, "bytes": path.stat().st_size, "max_abs_diff": delta, "parity_images": origin,
            "class_names": list(model.class_names), "threshold": threshold, "tta": reference.tta}
