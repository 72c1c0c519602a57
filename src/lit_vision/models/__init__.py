"""Nets, by registered name: every net takes ``in_chans``, ``input_size`` and ``num_outputs`` (filled in from the
data) and exposes ``forward_features`` (the penultimate embedding). See :mod:`lit_vision.models.registry`."""

from lit_vision.models.convnet import ConvNet
from lit_vision.models.mlp import MLP
from lit_vision.models.registry import create_net, list_models, net_class, register_model
from lit_vision.models.timm_net import TimmNet

__all__ = ["ConvNet", "MLP", "TimmNet", "create_net", "list_models", "net_class", "register_model"]
