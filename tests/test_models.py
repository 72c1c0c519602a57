"""Nets built from the preset YAMLs have the notebooks' parameter counts and sane shapes."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from lit_vision.models import create_net
from lit_vision.models.layers import Dropout
from lit_vision.training.classifier import num_outputs_for


def build_net(make_cfg, model: str, channels: int, size: int, num_classes: int, loss: str = "ce"):
    cfg = make_cfg(f"model={model}")
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    net_cfg.update(in_chans=channels, input_size=[size, size], num_outputs=num_outputs_for(num_classes, loss))
    return create_net(net_cfg)


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("model, channels, size, classes, expected", [
    ("horse_cnn", 3, 32, 2, 325_020),   # notebook 000, 2-way softmax output
    ("model_s", 3, 32, 10, 815_018),    # notebook 001, trainable parameters
])
def test_notebook_parameter_counts(make_cfg, model, channels, size, classes, expected):
    net = build_net(make_cfg, model, channels, size, classes)
    assert trainable(net) == expected
    out = net(torch.zeros(4, channels, size, size))
    assert out.shape == (4, classes)


@pytest.mark.parametrize("model", ["cnn", "dense"])
def test_generic_nets_adapt_to_input(make_cfg, model):
    for channels, size in [(1, 8), (3, 32), (1, 28)]:
        net = build_net(make_cfg, model, channels, size, 10)
        x = torch.rand(2, channels, size, size)
        assert net(x).shape == (2, 10)
        assert net.forward_features(x).shape == (2, net.num_features)


def test_bce_binary_has_one_output(make_cfg):
    net = build_net(make_cfg, "cnn", 3, 32, 2, loss="bce")
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 1)


def test_unknown_block_is_rejected():
    from lit_vision.models import ConvNet

    with pytest.raises(ValueError, match="unknown block"):
        ConvNet(3, [32, 32], 10, features=[{"convolution": 3}])


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_cpu_dropout_keeps_the_expected_share_scaled_and_routes_gradients(p):
    torch.manual_seed(0)
    layer = Dropout(p).train()
    x = torch.ones(200, 1000, requires_grad=True)
    y = layer(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01  # 200k draws: the share is within 1% of 1 - p
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / (1 - p)))  # survivors scaled like nn.Dropout
    y.sum().backward()
    assert torch.equal(x.grad != 0, kept)  # the gradient flows exactly through the kept units
    assert torch.equal(layer.eval()(x), x)  # identity at evaluation


def test_cpu_dropout_extremes_match_torch():
    x = torch.randn(8, 16)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.equal(Dropout(1.0).train()(x), torch.zeros_like(x))
