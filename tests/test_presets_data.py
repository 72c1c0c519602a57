"""Notebook 002-004 presets: parameter counts, the sweep knobs, and a fast_dev_run of each on synthetic data."""

from __future__ import annotations

import pytest
import torch.nn as nn
from conftest import FAST
from omegaconf import OmegaConf

from lit_vision.commands.train import run
from lit_vision.models import create_net
from lit_vision.training.classifier import num_outputs_for

# preset → (in_chans, image size, classes, trainable parameters)
PARAMS = {
    "fashion_dense": (1, 28, 10, 51_474),      # notebook 002 summary
    "fashion_cnn": (1, 28, 10, 6_795_834),     # notebook 002 code (224-filter third conv); see docs/datasets.md
    "fashion_cnn_final": (1, 28, 10, 7_033_162),  # + BatchNorm1d before the 3 dense layers (gamma, beta)
    "mnist_dense_mse": (1, 28, 10, 235_146),   # the notebook's architecture cell is missing: 784-256-128-10
    "mnist_cnn": (1, 28, 10, 34_826),          # notebook 003 summary
    "fer_custom_cnn": (3, 48, 2, 75_761),      # notebook 004 summary, one sigmoid output
    "fer_custom_cnn_aug": (3, 48, 2, 75_761),  # the same net with flips and crops
}


def build_net(cfg, in_chans: int, size: int, classes: int) -> nn.Module:
    model = OmegaConf.to_container(cfg.model, resolve=True)
    net = dict(model["net"])
    net.update(in_chans=in_chans, input_size=[size, size], num_outputs=num_outputs_for(classes, model["loss"]))
    return create_net(net)


def count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


@pytest.mark.parametrize("preset", list(PARAMS))
def test_parameter_counts(make_cfg, preset):
    in_chans, size, classes, expected = PARAMS[preset]
    assert count(build_net(make_cfg(f"experiment={preset}"), in_chans, size, classes)) == expected


def test_notebook_002_printed_summary_is_the_2224_filter_variant(make_cfg):
    """The notebook's model.summary() (66,941,834 params) matches a 2224-filter third conv, not its code's 224."""
    cfg = make_cfg("experiment=fashion_cnn", "model.conv3_filters=2224")
    assert count(build_net(cfg, 1, 28, 10)) == 66_941_834


def test_fer_custom_cnn_is_binary_with_one_output(make_cfg):
    cfg = make_cfg("experiment=fer_custom_cnn")
    assert cfg.model.loss == "bce" and cfg.data.name == "fer_happy_sad"
    assert build_net(cfg, 3, 48, 2).classifier.out_features == 1


def test_mnist_dense_uses_mse(make_cfg):
    assert make_cfg("experiment=mnist_dense_mse").model.loss == "mse"


@pytest.mark.parametrize("dropout,batchnorm", [(0.0, False), (0.35, True)])
def test_fashion_cnn_single_dropout_knob_reaches_every_dropout(make_cfg, dropout, batchnorm):
    cfg = make_cfg("experiment=fashion_cnn", f"model.dropout={dropout}", f"model.batchnorm={batchnorm}")
    net = build_net(cfg, 1, 28, 10)
    spatial = [m for m in net.modules() if isinstance(m, nn.Dropout2d)]
    dense = [m for m in net.modules() if isinstance(m, nn.Dropout)]
    assert len(spatial) == 2 and all(m.p == dropout for m in spatial)
    assert len(dense) == (3 if dropout else 0) and all(m.p == dropout for m in dense)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == (3 if batchnorm else 0)


def test_fashion_cnn_final_is_dropout_02_with_batchnorm(make_cfg):
    """Notebook 002's final model: every dropout 0.2 and a BatchNorm before each of the 3 dense layers."""
    net = build_net(make_cfg("experiment=fashion_cnn_final"), 1, 28, 10)
    dropouts = [m.p for m in net.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert dropouts == [0.2] * 5
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net.modules()) == 3


def test_fer_custom_cnn_with_class_weights_instead_of_balancing(make_cfg, synthetic_roots):
    cfg = make_cfg("experiment=fer_custom_cnn", "data=fer_happy_sad_weighted",
                   f"data.root={synthetic_roots['fer_happy_sad']}", *FAST)
    assert cfg.data.mapping.balance is False and cfg.data.class_weighting is True
    record = run(cfg)
    assert sum(record["support"].values()) == 6  # the whole synthetic happy + sad test set (3 + 3)
