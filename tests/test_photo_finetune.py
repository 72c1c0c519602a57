"""experiment=photo_finetune's recipe parts: layer-wise lr decay, a frozen first phase then fine-tuning, global
pooling; and the preset itself, run on small shards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import FAST
from test_shards_training import shard_dir  # noqa: F401  (the module's fixture)

from lit_vision.config import validate_config
from lit_vision.errors import ConfigError
from lit_vision.models.timm_net import TimmNet, block_groups
from lit_vision.training.optim import check_optimizer, create_optimizer, parameter_groups


def small_net(**kwargs) -> TimmNet:
    args = dict(in_chans=3, input_size=[32, 32], num_outputs=3, backbone="resnet10t", freeze=False, hidden=[],
                dropout=0.0, cache_features=False, pool=True)
    return TimmNet(**{**args, **kwargs})


def test_layer_decay_gives_each_backbone_block_a_smaller_rate_towards_the_input() -> None:
    net = small_net()
    groups = parameter_groups(net, lr=1.0, weight_decay=0.0, layer_decay=0.5)
    lr_of = {id(p): g["lr"] for g in groups for p in g["params"]}
    blocks = block_groups(net.backbone)
    params = dict(net.backbone.named_parameters())
    assert lr_of[id(net.classifier.weight)] == 1.0  # the head: the full rate
    assert lr_of[id(params[blocks[-1][0]])] == 0.5  # the last block
    assert lr_of[id(params[blocks[0][0]])] == pytest.approx(0.5 ** len(blocks))  # the stem: smallest
    assert sorted({lr_of[id(params[b[0]])] for b in blocks}) == [0.5 ** k for k in range(len(blocks), 0, -1)]
    plain = {g["lr"] for g in parameter_groups(net, lr=1.0, weight_decay=0.0)}
    assert plain == {1.0}


@pytest.mark.parametrize("value", [0, 1.5, True, "x"])
def test_a_layer_decay_outside_0_1_is_refused(value: object) -> None:
    with pytest.raises(ConfigError, match="model.optimizer.layer_decay"):
        check_optimizer({"name": "adamw", "lr": 1e-3, "layer_decay": value})


def test_layer_decay_on_a_net_without_a_timm_backbone_is_refused() -> None:
    with pytest.raises(ConfigError, match="layer_decay needs a timm backbone"):
        create_optimizer(torch.nn.Linear(2, 2), {"name": "adamw", "lr": 1e-3, "layer_decay": 0.7})


def _step(net: TimmNet, optimizer: torch.optim.Optimizer) -> None:
    net.train()
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(net(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()


def test_the_backbone_is_frozen_for_freeze_epochs_then_fine_tuned() -> None:
    net = small_net(freeze_epochs=1)
    optimizer = create_optimizer(net, {"name": "adamw", "lr": 1e-2, "weight_decay": 0.05})
    stem = next(net.backbone.parameters())
    net.start_epoch(0)
    before, head_before = stem.detach().clone(), net.classifier.weight.detach().clone()
    bn_stats = [b.running_mean.clone() for b in net.backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    _step(net, optimizer)
    assert torch.equal(stem, before) and not net.backbone.training  # frozen: no step, no decay, BN statistics kept
    assert [b.running_mean for b in net.backbone.modules() if isinstance(b, torch.nn.BatchNorm2d)][0].equal(
        bn_stats[0])
    assert not torch.equal(net.classifier.weight, head_before)  # the head learns
    net.start_epoch(1)
    _step(net, optimizer)
    assert not torch.equal(stem, before) and net.backbone.training  # then everything trains


def test_freeze_epochs_with_a_backbone_frozen_throughout_is_refused() -> None:
    with pytest.raises(ConfigError, match="model.net.freeze=false"):
        small_net(freeze=True, freeze_epochs=2)


def test_the_photo_finetune_preset_trains_on_shards(make_cfg, shard_dir: Path) -> None:  # noqa: F811
    from test_exact_resume import run

    cfg = make_cfg("experiment=photo_finetune", f"data.root={shard_dir}", "model.net.backbone=resnet10t",
                   "data.image_size=32", "data.num_workers=0", "trainer.max_epochs=2", "data.batch_size=27",
                   "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary")
    validate_config(cfg)
    assert cfg.model.optimizer.layer_decay == 0.75 and cfg.model.net.freeze_epochs == 1 and cfg.model.ema_decay
    record = run(cfg)
    assert record["epochs_trained"] == 2 and record["data"]["source"] == "shards"
    assert sum(map(sum, record["confusion_matrix"])) == 18


def test_the_photo_finetune_preset_composes_with_its_defaults(make_cfg) -> None:
    cfg = make_cfg("experiment=photo_finetune", "data.root=somewhere", *FAST)
    assert cfg.data._target_.endswith("ShardsDataModule") and list(cfg.data.image_size) == [224, 224]
    assert cfg.model.net.backbone == "resnet50" and cfg.model.net.pool and cfg.model.scheduler.name == "warmup_cosine"
    validate_config(cfg)


def test_ddp_with_a_frozen_first_phase_expects_unused_parameters(make_cfg) -> None:
    """DDP's reducer fails on the second step when parameters get no gradient, unless told to expect it."""
    from lit_vision.training.distributed import device_overrides

    frozen = make_cfg("experiment=photo_finetune", "data.root=x", "trainer=ddp", "accelerator=cpu", *FAST)
    assert device_overrides(frozen, announce=False)["strategy"] == "ddp_find_unused_parameters_true"
    plain = make_cfg("experiment=photo_finetune", "data.root=x", "trainer=ddp", "accelerator=cpu",
                     "model.net.freeze_epochs=0", *FAST)
    assert "strategy" not in device_overrides(plain, announce=False)
