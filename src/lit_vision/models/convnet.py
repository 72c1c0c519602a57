"""A CNN described by a list of blocks, so each notebook architecture is a YAML preset, not a class.

``features`` is a list of one-key dicts, applied in order::

    - {conv: 32, kernel: 3, padding: same, act: relu}   # Conv2d (+ activation)
    - {bn: true}                                        # BatchNorm2d
    - {pool: 2, stride: 1, type: max}                   # MaxPool2d / AvgPool2d
    - {dropout: 0.2}                                    # SpatialDropout2D (Dropout2d)
    - {act: gelu}                                       # an activation on its own (conv → pool → bn → act)
    - {whiten: 24, kernel: 2, eps: 5.0e-4, act: gelu}   # airbench's frozen patch-whitening conv (whitening.py)

then flatten and a dense head: ``head: {hidden: [256], dropout: 0.5, input_dropout: 0.5, batchnorm: false}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from lit_vision.errors import ConfigError
from lit_vision.models.layers import activation, dense_stack, init_weights
from lit_vision.models.registry import register_model
from lit_vision.models.whitening import PatchWhitening

#: the keys each block kind and the head take (anything else is a typo and refused)
#: (checked in this order: a block is the first kind whose key it has, so ``act`` alone comes last)
BLOCK_KEYS = {"conv": {"conv", "kernel", "stride", "padding", "act"}, "whiten": {"whiten", "kernel", "eps", "act"},
              "pool": {"pool", "stride", "type"}, "bn": {"bn"}, "dropout": {"dropout"}, "act": {"act"}}
HEAD_KEYS = {"hidden", "dropout", "input_dropout", "batchnorm", "act"}


def _check_keys(where: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"model.net.{where} {dict(given)} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _conv(spec: Mapping[str, Any], in_ch: int) -> tuple[list[nn.Module], int]:
    out_ch = int(spec["conv"])
    padding = spec.get("padding", "valid")
    if padding not in ("same", "valid") and not isinstance(padding, int):
        raise ConfigError(f"conv padding must be same, valid or an int, got {padding!r}")
    layers = [nn.Conv2d(in_ch, out_ch, int(spec.get("kernel", 3)), stride=int(spec.get("stride", 1)),
                        padding=padding if padding != "valid" else 0)]
    layers.append(activation(spec.get("act", "relu")))
    return layers, out_ch


def _pool(spec: Mapping[str, Any]) -> nn.Module:
    size = int(spec["pool"])
    stride = int(spec.get("stride", size))
    kind = spec.get("type", "max")
    if kind not in ("max", "avg"):
        raise ConfigError(f"pool type must be max or avg, got {kind!r}")
    return nn.MaxPool2d(size, stride) if kind == "max" else nn.AvgPool2d(size, stride)


def build_features(specs: Sequence[Mapping[str, Any] | str], in_chans: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    ch = int(in_chans)
    for i, spec in enumerate(specs):
        spec = {spec: True} if isinstance(spec, str) else dict(spec)
        kind = next((k for k in BLOCK_KEYS if k in spec), None)
        if kind is None:
            raise ConfigError(f"model.net.features.{i}: unknown block {spec}; use one of {list(BLOCK_KEYS)}")
        _check_keys(f"features.{i}", spec, BLOCK_KEYS[kind])
        if kind == "conv":
            new, ch = _conv(spec, ch)
            layers += new
        elif kind == "pool":
            layers.append(_pool(spec))
        elif kind == "bn":
            layers.append(nn.BatchNorm2d(ch))
        elif kind == "dropout":
            layers.append(nn.Dropout2d(float(spec["dropout"])))
        elif kind == "whiten":
            if i:
                raise ConfigError(f"model.net.features.{i}: a whiten block is fitted on the normalised images, so it "
                                  "must be the first block")
            whiten = PatchWhitening(ch, int(spec["whiten"]), int(spec.get("kernel", 2)), float(spec.get("eps", 5e-4)))
            layers += [whiten, activation(spec.get("act", "none"))]
            ch = whiten.out_channels
        elif kind == "act":
            layers.append(activation(spec["act"]))
    return nn.Sequential(*layers), ch


@register_model("convnet")
class ConvNet(nn.Module):
    def __init__(self, in_chans: int, input_size: Sequence[int], num_outputs: int,
                 features: Sequence[Mapping[str, Any] | str], head: Mapping[str, Any] | None = None,
                 init: str = "glorot") -> None:
        super().__init__()
        self.features, _ = build_features(features, in_chans)
        with torch.no_grad():
            flat = self.features(torch.zeros(1, int(in_chans), *map(int, input_size))).numel()
        head = dict(head or {})
        _check_keys("head", head, HEAD_KEYS)
        stack = dense_stack(flat, head.get("hidden", []), num_outputs, float(head.get("dropout", 0.0)),
                            float(head.get("input_dropout", 0.0)), bool(head.get("batchnorm", False)),
                            head.get("act", "relu"))
        self.head = nn.Sequential(nn.Flatten(), *list(stack)[:-1])
        self.classifier = stack[-1]
        self.num_features = self.classifier.in_features
        init_weights(self, init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding (used by XGBoost on embeddings)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
