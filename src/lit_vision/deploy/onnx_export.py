"""A trained classifier as an ONNX model that needs nothing but onnxruntime: uint8 images in, probabilities out.

The graph takes ``uint8 (N, C, H, W)`` at the trained size (no resizing: the caller decodes and resizes as
training did), divides by 255 and normalises inside, and returns ``(N, K)`` class probabilities; the batch axis is
dynamic. Class names, the input spec and (binary runs) the operating point's threshold travel in the model's
metadata. Every export checks itself against PyTorch on real test images (:func:`check_parity`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lit_vision.deploy.inference import stored_threshold
from lit_vision.errors import LitVisionError
from lit_vision.runs.paths import run_dir_of_checkpoint
from lit_vision.training.checkpoints import load_classifier

log = logging.getLogger("lit_vision")

#: largest |ONNX − PyTorch| probability an export may differ by
PARITY_TOLERANCE = 1e-4


class ExportError(LitVisionError):
    """The export could not be written or does not compute what the checkpoint computes."""


class ProbabilityGraph(torch.nn.Module):
    """The classifier as deployed: uint8 images → normalised floats → net → class probabilities (no TTA)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.probabilities(self.model(images))


def checkpoint_of(spec: str | Path) -> Path:
    """A run dir (its ``checkpoints/best.ckpt``, else ``last.ckpt``) or a ``.ckpt`` file."""
    path = Path(spec).expanduser()
    if path.is_dir():
        for name in ("best.ckpt", "last.ckpt"):
            if (path / "checkpoints" / name).is_file():
                return path / "checkpoints" / name
        raise ExportError(f"{spec}: no checkpoints/best.ckpt or last.ckpt in this folder; pass a run dir or a .ckpt")
    if not path.is_file():
        raise ExportError(f"{spec}: no such file or folder")
    return path


def metadata(model: Any, threshold: float | None, source: Path) -> dict[str, str]:
    spec = model.hparams.input_spec
    meta = {"class_names": json.dumps(list(model.class_names)),
            "input": json.dumps({"dtype": "uint8", "layout": "NCHW", "channels": int(spec["channels"]),
                                 "height": int(spec["image_size"][0]), "width": int(spec["image_size"][1])}),
            "normalization": json.dumps({"mean": list(spec["mean"]), "std": list(spec["std"])}),
            "model": str(model.net_name), "source_checkpoint": str(source)}
    if threshold is not None:
        meta["threshold"] = repr(float(threshold))
        meta["positive_class"] = str(model.class_names[1])
    return meta


def export_onnx(model: Any, ckpt: Path, out: Path, threshold: float | None) -> Path:
    """Write ``model`` (loaded from ``ckpt``) to ``out``: ONNX, dynamic batch, metadata with ``threshold``."""
    import onnx

    spec = model.hparams.input_spec
    example = torch.zeros(2, int(spec["channels"]), *map(int, spec["image_size"]), dtype=torch.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    torch.onnx.export(ProbabilityGraph(model), (example,), str(out), input_names=["images"],
                      output_names=["probabilities"], dynamic_shapes=({0: batch},), dynamo=True,
                      external_data=False)
    proto = onnx.load(str(out))
    for key, value in metadata(model, threshold, ckpt).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(out))
    return out


def parity_images(ckpt: Path, spec: Any, count: int = 256) -> tuple[np.ndarray, str]:
    """Up to ``count`` of the run's own test images (from its saved config), else random images of the right
    shape (a lone checkpoint has no data config); with where they came from."""
    config = run_dir_of_checkpoint(ckpt) / ".hydra" / "config.yaml"
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


def check_parity(onnx_path: Path, model: Any, images: np.ndarray) -> float:
    """Max |Δ probability| between onnxruntime and PyTorch on ``images``; raises above :data:`PARITY_TOLERANCE`."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": images})[0]
    with torch.no_grad():
        want = ProbabilityGraph(model)(torch.from_numpy(images)).numpy()
    delta = float(np.abs(got - want).max())
    if not delta <= PARITY_TOLERANCE:
        raise ExportError(f"{onnx_path}: onnxruntime differs from PyTorch by {delta:.2e} in probability (allowed "
                          f"{PARITY_TOLERANCE:.0e}); the file was removed")
    return delta


def export(spec: str | Path, out: str | Path | None = None, fmt: str = "onnx") -> dict[str, Any]:
    """Export, verify, and describe: the ``python -m lit_vision.export`` command's work."""
    if fmt != "onnx":
        raise ExportError(f"--format {fmt}: only onnx is supported")
    ckpt = checkpoint_of(spec)
    out = Path(out) if out else run_dir_of_checkpoint(ckpt) / "model.onnx"
    model = load_classifier(ckpt, map_location="cpu").float().eval()
    threshold = stored_threshold(run_dir_of_checkpoint(ckpt), len(model.class_names))
    path = export_onnx(model, ckpt, out, threshold)
    images, origin = parity_images(ckpt, model.hparams.input_spec)
    try:
        delta = check_parity(path, model, images)
    except ExportError:
        path.unlink(missing_ok=True)
        raise
    return {"path": path, "bytes": path.stat().st_size, "max_abs_diff": delta, "parity_images": origin,
            "class_names": list(model.class_names), "threshold": threshold}
