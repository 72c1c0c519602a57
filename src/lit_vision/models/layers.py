"""Building blocks shared by the nets: a dense stack and Keras-like weight initialisation."""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU,
                                           "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU}


def activation(name: str | None) -> nn.Module:
    if name is None or name == "none":
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def dense_stack(in_features: int, hidden: Sequence[int], num_outputs: int, dropout: float = 0.0,
                input_dropout: float = 0.0, batchnorm: bool = False, act: str = "relu") -> nn.Sequential:
    """[Dropout] → (for each hidden width: [BatchNorm] → Linear → act → [Dropout]) → Linear(num_outputs).

    ``batchnorm`` puts a BatchNorm1d before each hidden dense layer (notebook 002's "BN before dense").
    """
    layers: list[nn.Module] = []
    if input_dropout:
        layers.append(nn.Dropout(input_dropout))
    width = in_features
    for h in hidden:
        if batchnorm:
            layers.append(nn.BatchNorm1d(width))
        layers += [nn.Linear(width, int(h)), activation(act)]
        if dropout:
            layers.append(nn.Dropout(dropout))
        width = int(h)
    layers.append(nn.Linear(width, num_outputs))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module, scheme: str = "glorot") -> None:
    """``glorot``: Keras defaults (Glorot-uniform weights, zero bias) to match the notebooks; ``torch``: keep."""
    if scheme == "torch":
        return
    if scheme != "glorot":
        raise ValueError(f"unknown init {scheme!r}; choose glorot or torch")
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
