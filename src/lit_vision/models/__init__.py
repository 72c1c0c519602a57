"""Nets built from config by Hydra ``_target_``: every net takes ``in_chans``, ``input_size`` and
``num_outputs`` (filled in from the data) and exposes ``forward_features`` (the penultimate embedding)."""

from lit_vision.models.convnet import ConvNet
from lit_vision.models.mlp import MLP

__all__ = ["ConvNet", "MLP"]
