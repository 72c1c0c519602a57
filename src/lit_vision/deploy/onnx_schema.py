"""What an exported ``.onnx`` says about itself: the one schema of its ``metadata_props`` (standard library only).

:func:`lit_vision.deploy.onnx_export.export` writes :meth:`OnnxModelInfo.to_metadata`; the onnxruntime backend of
:mod:`lit_vision.deploy.model` (the torch-free server) reads it back with :meth:`OnnxModelInfo.from_metadata`. No
other module names a metadata key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: the graph's input and output names
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"

#: metadata keys (values are strings; JSON where structured)
CLASS_NAMES, INPUT, NORMALIZATION, TTA, MODEL, SOURCE = (
    "class_names", "input", "normalization", "tta", "model", "source_checkpoint")
THRESHOLD, POSITIVE_CLASS = "threshold", "positive_class"
REQUIRED = (CLASS_NAMES, INPUT)


class SchemaError(ValueError):
    """The metadata is not a lit_vision export's (a key is missing or unreadable)."""


@dataclass
class OnnxModelInfo:
    """Classes, input format, normalisation and test-time augmentation baked into the graph, the source
    checkpoint and (binary runs) the operating point's threshold."""

    class_names: list[str]
    channels: int
    height: int
    width: int
    mean: list[float] = field(default_factory=list)
    std: list[float] = field(default_factory=list)
    tta: dict[str, Any] = field(default_factory=lambda: {"hflip": False, "translate": 0})
    model: str = ""
    source_checkpoint: str = ""
    threshold: float | None = None
    #: ``data=shards`` models: decode as evaluated (shorter side to min(size) / crop_fraction, centre crop); exports
    #: without it (in-memory data, files written before the key) squash the image to (height, width)
    crop_fraction: float | None = None

    @property
    def positive_class(self) -> str | None:
        return self.class_names[1] if self.threshold is not None and len(self.class_names) == 2 else None

    def to_metadata(self) -> dict[str, str]:
        spec: dict[str, Any] = {"dtype": "uint8", "layout": "NCHW", "channels": int(self.channels),
                                "height": int(self.height), "width": int(self.width)}
        if self.crop_fraction is not None:
            spec["crop_fraction"] = float(self.crop_fraction)
        meta = {CLASS_NAMES: json.dumps(list(self.class_names)), INPUT: json.dumps(spec),
                NORMALIZATION: json.dumps({"mean": list(self.mean), "std": list(self.std)}),
                TTA: json.dumps(dict(self.tta)), MODEL: str(self.model), SOURCE: str(self.source_checkpoint)}
        if self.threshold is not None:
            meta[THRESHOLD] = repr(float(self.threshold))
            meta[POSITIVE_CLASS] = str(self.positive_class)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str]) -> OnnxModelInfo:
        """Read :meth:`to_metadata`'s keys back; raises :class:`SchemaError` naming what is missing or unreadable.
        Exports written before the ``tta`` key existed had no test-time augmentation in the graph; those without
        ``input.crop_fraction`` squash the image to the input size."""
        missing = [k for k in REQUIRED if k not in meta]
        if missing:
            raise SchemaError(f"no {'/'.join(missing)} metadata")
        try:
            spec = json.loads(meta[INPUT])
            norm = json.loads(meta.get(NORMALIZATION, "{}"))
            return cls(class_names=list(json.loads(meta[CLASS_NAMES])), channels=int(spec["channels"]),
                       height=int(spec["height"]), width=int(spec["width"]), mean=list(norm.get("mean", [])),
                       std=list(norm.get("std", [])),
                       tta=dict(json.loads(meta.get(TTA, '{"hflip": false, "translate": 0}'))),
                       model=meta.get(MODEL, ""), source_checkpoint=meta.get(SOURCE, ""),
                       threshold=float(meta[THRESHOLD]) if THRESHOLD in meta else None,
                       crop_fraction=_crop_fraction(spec.get("crop_fraction")))
        except (ValueError, KeyError, TypeError) as exc:
            raise SchemaError(f"unreadable metadata ({type(exc).__name__}: {exc})") from exc


def _crop_fraction(value: Any) -> float | None:
    """``input.crop_fraction``: absent (squash), or a number in (0, 1]."""
    if value is None:
        return None
    fraction = float(value)
    if not 0 < fraction <= 1:
        raise ValueError(f"input.crop_fraction={value!r} is not in (0, 1]")
    return fraction
