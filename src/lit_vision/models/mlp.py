"""Dense network (notebooks 002 and 003): flatten the image, then a stack of dense layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from lit_vision.models.layers import dense_stack, init_weights
from lit_vision.models.registry import register_model


@register_model("mlp")
class MLP(nn.Module):
    def __init__(self, in_chans: int, input_size: Sequence[int], num_outputs: int,
                 hidden: Sequence[int] = (256, 128), dropout: float = 0.0, batchnorm: bool = False,
                 act: str = "relu", init: str = "glorot") -> None:
        super().__init__()
        in_features = int(in_chans) * int(input_size[0]) * int(input_size[1])
        self.num_features = int(hidden[-1]) if hidden else in_features
        self.body = nn.Sequential(nn.Flatten(), *list(dense_stack(in_features, hidden, num_outputs, dropout,
                                                                   0.0, batchnorm, act))[:-1])
        self.classifier = nn.Linear(self.num_features, num_outputs)
        init_weights(self, init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate-layer embedding (used by XGBoost on embeddings)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))
