"""A CNN described by a list of blocks, so each notebook architecture is a YAML preset, not a class.

``features`` is a list of one-key dicts, applied in order::

    - {conv: 32, kernel: 3, padding: same, act: relu}   # Conv2d (+ activation); bias: false drops its bias
    - {bn: true}                                        # BatchNorm2d; momentum, eps, learn_scale: false (airbench)
    - {pool: 2, stride: 1, type: max}                   # MaxPool2d / AvgPool2d
    - {dropout: 0.2}                                    # SpatialDropout2D (Dropout2d)
    - {act: gelu}                                       # an activation on its own (conv → pool → bn → act)
    - {whiten: 24, kernel: 2, eps: 5.0e-4, act: gelu}   # airbench's frozen patch-whitening conv (whitening.py);
                                                        # whiten: all = every component, both signs (2 x C x k^2)

then flatten and a dense head: ``head: {hidden: [256], dropout: 0.5, input_dropout: 0.5, batchnorm: false}``;
airbench's head is ``{bias: false, scale: 0.111}`` (no output bias, logits times 1/9).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn

from lit_vision.checks import non_negative_int, positive_int, positive_number, proportion
from lit_vision.errors import ConfigError
from lit_vision.models.layers import activation, check_init, dense_stack, init_weights
from lit_vision.models.registry import register_model
from lit_vision.models.whitening import PatchWhitening

#: the keys each block kind and the head take (anything else is a typo and refused)
#: (checked in this order: a block is the first kind whose key it has, so ``act`` alone comes last)
BLOCK_KEYS = {"conv": {"conv", "kernel", "stride", "padding", "act", "bias"},
              "whiten": {"whiten", "kernel", "eps", "act"}, "pool": {"pool", "stride", "type"},
              "bn": {"bn", "momentum", "eps", "learn_scale"}, "dropout": {"dropout"}, "act": {"act"}}
HEAD_KEYS = {"hidden", "dropout", "input_dropout", "batchnorm", "act", "bias", "scale"}


def _check_keys(where: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(given) - allowed)
    if unknown:
        raise ConfigError(f"model.net.{where} {dict(given)} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def _conv(spec: Mapping[str, Any], in_ch: int, where: str) -> tuple[list[nn.Module], int]:
    out_ch = positive_int(spec["conv"], f"{where}.conv")
    padding = spec.get("padding", "valid")
    if padding not in ("same", "valid"):
        padding = non_negative_int(padding, f"{where}.padding")  # or same / valid
    stride = positive_int(spec.get("stride", 1), f"{where}.stride")
    if padding == "same" and stride != 1:
        raise ConfigError(f"{where}: padding=same needs stride=1 (PyTorch); use an integer padding with "
                          f"stride={stride}")
    layers = [nn.Conv2d(in_ch, out_ch, positive_int(spec.get("kernel", 3), f"{where}.kernel"), stride=stride,
                        padding=padding if padding != "valid" else 0, bias=_flag(spec, "bias", True, where))]
    layers.append(activation(spec.get("act", "relu"), f"{where}.act"))
    return layers, out_ch


def _flag(spec: Mapping[str, Any], key: str, default: bool, where: str) -> bool:
    """``spec[key]`` (``default`` when absent), which must be true or false; ``where`` is the block's dotted key."""
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}={value!r} must be true or false")
    return value


def _batchnorm(spec: Mapping[str, Any], ch: int, where: str) -> nn.BatchNorm2d:
    """``{bn: true, momentum: 0.1, eps: 1e-5, learn_scale: true}`` (PyTorch's defaults). airbench freezes the scale
    at 1 (``learn_scale: false``: the conv before it sets the scale) and uses momentum 0.4, eps 1e-12."""
    momentum = spec.get("momentum", 0.1)
    if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 < momentum <= 1.0:
        raise ConfigError(f"{where}.momentum={momentum!r} must be in (0, 1] (PyTorch's meaning: the weight of the "
                          "new batch in the running statistics)")
    eps = positive_number(spec.get("eps", 1e-5), f"{where}.eps")
    bn = nn.BatchNorm2d(ch, eps=eps, momentum=float(momentum))
    bn.weight.requires_grad_(_flag(spec, "learn_scale", True, where))
    return bn


def _pool(spec: Mapping[str, Any], where: str) -> nn.Module:
    size = positive_int(spec["pool"], f"{where}.pool")
    stride = positive_int(spec.get("stride", size), f"{where}.stride")
    kind = spec.get("type", "max")
    if kind not in ("max", "avg"):
        raise ConfigError(f"{where}.type={kind!r} must be max or avg")
    return nn.MaxPool2d(size, stride) if kind == "max" else nn.AvgPool2d(size, stride)


def build_features(specs: Sequence[Mapping[str, Any] | str], in_chans: int) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    ch = int(in_chans)
    if isinstance(specs, (str, Mapping)) or not isinstance(specs, Sequence):
        raise ConfigError(f"model.net.features={specs!r} must be a list of blocks, e.g. "
                          "[{conv: 32, kernel: 3}, {pool: 2}]")
    for i, spec in enumerate(specs):
        if not isinstance(spec, (str, Mapping)):
            raise ConfigError(f"model.net.features.{i}={spec!r} must be a block such as {{conv: 32}} or {{pool: 2}}")
        spec = {spec: True} if isinstance(spec, str) else dict(spec)
        kind = next((k for k in BLOCK_KEYS if k in spec), None)
        if kind is None:
            raise ConfigError(f"model.net.features.{i}: unknown block {spec}; use one of {list(BLOCK_KEYS)}")
        _check_keys(f"features.{i}", spec, BLOCK_KEYS[kind])
        where = f"model.net.features.{i}"
        if kind == "conv":
            new, ch = _conv(spec, ch, where)
            layers += new
        elif kind == "pool":
            layers.append(_pool(spec, where))
        elif kind == "bn":
            layers.append(_batchnorm(spec, ch, where))
        elif kind == "dropout":
            layers.append(nn.Dropout2d(proportion(spec["dropout"], f"{where}.dropout")))
        elif kind == "whiten":
            if i:
                raise ConfigError(f"model.net.features.{i}: a whiten block is fitted on the normalised images, so it "
                                  "must be the first block")
            kernel = positive_int(spec.get("kernel", 2), f"{where}.kernel")
            width = 2 * ch * kernel ** 2 if spec["whiten"] == "all" else positive_int(spec["whiten"], f"{where}.whiten")
            whiten = PatchWhitening(ch, width, kernel, positive_number(spec.get("eps", 5e-4), f"{where}.eps"))
            layers += [whiten, activation(spec.get("act", "none"), f"{where}.act")]
            ch = whiten.out_channels
        elif kind == "act":
            layers.append(activation(spec["act"], f"{where}.act"))
    return nn.Sequential(*layers), ch


def _feature_size(features: nn.Sequential, in_chans: int, input_size: Sequence[int]) -> int:
    """The flattened size of the blocks' output for one image; a net that shrinks the image to nothing is a
    :class:`ConfigError`."""
    size = [int(s) for s in input_size]
    try:
        out = features(torch.zeros(1, int(in_chans), *size))
    except RuntimeError as exc:
        raise ConfigError(f"model.net.features do not fit {size[0]}x{size[1]} inputs "
                          f"({str(exc).splitlines()[0]}): remove a pool or stride, or use larger images "
                          "(data.image_size / model.input_size)") from exc
    if out.numel() == 0:
        raise ConfigError(f"model.net.features leave nothing of {size[0]}x{size[1]} inputs (output {list(out.shape)}):"
                          " remove a pool or stride, or use larger images (data.image_size / model.input_size)")
    return out.numel()


@register_model("convnet")
class ConvNet(nn.Module):
    def __init__(self, in_chans: int, input_size: Sequence[int], num_outputs: int,
                 features: Sequence[Mapping[str, Any] | str], head: Mapping[str, Any] | None = None,
                 init: str = "glorot") -> None:
        super().__init__()
        check_init(init)
        self.features, _ = build_features(features, in_chans)
        with torch.no_grad():
            flat = _feature_size(self.features, in_chans, input_size)
        head = dict(head or {})
        _check_keys("head", head, HEAD_KEYS)
        stack = dense_stack(flat, head.get("hidden", []), num_outputs, head.get("dropout", 0.0),
                            head.get("input_dropout", 0.0), _flag(head, "batchnorm", False, "model.net.head"),
                            head.get("act", "relu"), output_bias=_flag(head, "bias", True, "model.net.head"),
                            key="model.net.head")
        self.head = nn.Sequential(nn.Flatten(), *list(stack)[:-1])
        self.classifier = stack[-1]
        self.num_features = self.classifier.in_features
        self.logit_scale = positive_number(head.get("scale", 1.0), "model.net.head.scale")  # logits x scale
        init_weights(self, init)

    @staticmethod
    def check_config(args: Mapping[str, Any], in_chans: int, input_size: Sequence[int] | None,
                     num_outputs: int) -> None:
        """``model.net`` checked without data (:func:`~lit_vision.models.registry.check_spec`): the whole net is
        built on the meta device (no memory, no compute), or only its blocks when the input size is not known."""
        with torch.device("meta"):
            if input_size is not None:
                ConvNet(in_chans, input_size, num_outputs, **args)
            else:
                build_features(args.get("features", []), in_chans)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding (used by XGBoost on embeddings)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.forward_features(x))
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits
