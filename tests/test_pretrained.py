"""Pretrained timm backbones (model=vgg16): freezing, weights files, offline errors, normalisation, export."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from conftest import FAST, accuracy_from_predictions

from lit_vision.commands.export_backbone import export_backbone
from lit_vision.commands.train import run
from lit_vision.data.synthetic import write_image_folder
from lit_vision.errors import ConfigError
from lit_vision.models.timm_net import TimmNet, WeightsError
from lit_vision.training.checkpoints import load_classifier

TINY = "test_resnet"  # a 0.4M-parameter timm test model: fast on a CPU


def trainable(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def test_vgg16_head_has_the_notebook_trainable_parameter_count():
    net = TimmNet(3, [48, 48], 1, backbone="vgg16")
    assert trainable(net) == 131_585  # notebook 004: 512 → 256 → 1 on a frozen VGG16 at 48x48x3
    assert sum(p.numel() for p in net.backbone.parameters()) == 14_714_688  # Keras VGG16 include_top=False
    assert net.forward_features(torch.rand(2, 3, 48, 48)).shape == (2, 256)


def test_freeze_options_change_what_trains():
    frozen = TimmNet(3, [32, 32], 2, backbone=TINY)
    full = TimmNet(3, [32, 32], 2, backbone=TINY, freeze=False)
    partial = TimmNet(3, [32, 32], 2, backbone=TINY, trainable_blocks=1)
    head = trainable(frozen)
    assert head == sum(p.numel() for p in [*frozen.head.parameters(), *frozen.classifier.parameters()])
    assert head < trainable(partial) < trainable(full) == sum(p.numel() for p in full.parameters())
    frozen.train()
    assert not frozen.backbone.training and frozen.head.training  # frozen backbone stays in eval mode
    full.train()
    assert full.backbone.training


def test_too_many_trainable_blocks_is_a_config_error():
    with pytest.raises(ConfigError, match="trainable_blocks=99"):
        TimmNet(3, [32, 32], 2, backbone=TINY, trainable_blocks=99)


def test_frozen_features_are_cached_and_identical():
    torch.manual_seed(0)
    net = TimmNet(3, [32, 32], 2, backbone=TINY, dropout=0.0).train()
    x = torch.rand(6, 3, 32, 32)
    first = net(x)
    again = net(torch.cat([x[:3], torch.rand(2, 3, 32, 32)]))
    assert net.cache.misses == 8 and net.cache.hits == 3
    assert torch.allclose(first[:3], again[:3], atol=1e-6)
    uncached = TimmNet(3, [32, 32], 2, backbone=TINY, dropout=0.0, cache_features=False)
    uncached.load_state_dict(net.state_dict())
    assert torch.allclose(uncached.train()(x), first, atol=1e-5)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weights_file_is_loaded(tmp_path: Path, suffix: str):
    torch.manual_seed(1)
    source = timm.create_model(TINY, num_classes=0)
    state = source.state_dict()
    path = tmp_path / f"backbone{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    net = TimmNet(3, [32, 32], 2, backbone=TINY, weights=str(path))
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    # 1-channel input: timm folds the RGB kernels of the first conv into one channel
    gray = TimmNet(1, [32, 32], 2, backbone=TINY, weights=str(path))
    assert torch.allclose(gray.backbone.conv1[0].weight, state["conv1.0.weight"].sum(dim=1, keepdim=True))


def test_bad_weights_files_raise_clear_errors(tmp_path: Path):
    with pytest.raises(WeightsError, match="no such file"):
        TimmNet(3, [32, 32], 2, backbone=TINY, weights=str(tmp_path / "missing.pth"))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("test_efficientnet", num_classes=0).state_dict(), other)
    with pytest.raises(WeightsError, match="test_resnet"):
        TimmNet(3, [32, 32], 2, backbone=TINY, weights=str(other))


def test_offline_pretrained_without_file_names_both_ways_out(monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as info:
        TimmNet(3, [32, 32], 2, backbone="resnet18", pretrained=True)
    message = str(info.value)
    assert "model.net.pretrained=true" in message and "model.net.weights=" in message


def test_unknown_backbone_name():
    with pytest.raises(ConfigError, match="not a timm model name"):
        TimmNet(3, [32, 32], 2, backbone="vgg1600")


@pytest.fixture
def pets(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    write_image_folder(root / "train", ["cat", "dog"], 12, size=20)
    write_image_folder(root / "test", ["cat", "dog"], 4, size=20, seed=1)
    return root


def test_train_export_and_reload_backbone(make_cfg, pets: Path, tmp_path: Path):
    common = ["model=vgg16", f"model.net.backbone={TINY}", "data=image_folder", f"data.root={pets}",
              "data.batch_size=8", "model.input_size=[32,32]", "accelerator=cpu",
              "~callbacks.progress_bar", "~callbacks.model_summary"]
    cfg = make_cfg(*common, "trainer.max_epochs=2")
    record = run(cfg)
    assert record["test/acc"] == pytest.approx(accuracy_from_predictions(cfg.paths.output_dir), abs=1e-6)
    model = load_classifier(record["best_checkpoint"])
    spec = model.hparams.input_spec
    assert spec["image_size"] == [32, 32]
    assert spec["mean"] == pytest.approx(list(timm.get_pretrained_cfg(TINY).mean), abs=1e-6)  # the backbone's own
    weights = export_backbone(record["best_checkpoint"], tmp_path / "exported.safetensors")
    reloaded = TimmNet(3, [32, 32], 2, backbone=TINY, weights=str(weights))
    for key, value in reloaded.backbone.state_dict().items():
        assert torch.equal(value, model.net.backbone.state_dict()[key]), key
    # and the file drives a new frozen run offline
    record2 = run(make_cfg(*common, *FAST[:1], f"model.net.weights={weights}"))
    assert "test/acc" in record2


def test_normalize_net_needs_a_net_with_a_data_config(make_cfg):
    cfg = make_cfg(*FAST, "model.normalize=net")
    with pytest.raises(ConfigError, match="no own data config"):
        run(cfg)
