"""Stable model names: configs and checkpoints name nets by registered name; old checkpoints still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from lit_vision.errors import ConfigError
from lit_vision.models import MLP, ConvNet, TimmNet, create_net, list_models, net_class
from lit_vision.models.registry import canonical_spec, register_model
from lit_vision.training.checkpoints import load_classifier, read_checkpoint

DATA = Path(__file__).parent / "data"
DATA_ARGS = {"in_chans": 1, "input_size": [8, 8], "num_outputs": 3}


def test_every_net_is_registered_by_name() -> None:
    assert {"convnet": ConvNet, "mlp": MLP, "timm": TimmNet}.items() <= {n: net_class(n) for n in list_models()}.items()


def test_create_net_by_name() -> None:
    net = create_net({"name": "mlp", "hidden": [5]}, **DATA_ARGS)
    assert isinstance(net, MLP) and net.classifier.out_features == 3 and net.num_features == 5


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ConfigError, match=r"model.net.name='resnet_typo' is not a registered net; choose one of \["):
        create_net({"name": "resnet_typo"}, **DATA_ARGS)


def test_unknown_argument_is_refused_with_its_name() -> None:
    with pytest.raises(ConfigError, match=r"does not take \['hiden'\]"):
        create_net({"name": "mlp", "hiden": [5]}, **DATA_ARGS)


def test_unknown_convnet_block_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"features.0 .* unknown key\(s\) \['kernal'\]"):
        create_net({"name": "convnet", "features": [{"conv": 4, "kernal": 3}]}, **DATA_ARGS)


def test_a_name_cannot_be_taken_twice() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("mlp")(type("OtherMLP", (torch.nn.Module,), {}))


def test_legacy_import_paths_translate_to_names() -> None:
    assert canonical_spec({"_target_": "lit_vision.models.ConvNet", "features": []}) == {"name": "convnet",
                                                                                          "features": []}
    assert canonical_spec({"_target_": "lit_vision.models.pretrained.TimmNet"})["name"] == "timm"
    with pytest.raises(ConfigError, match="is not a lit_vision net"):
        canonical_spec({"_target_": "somewhere.Else"})


@pytest.mark.parametrize("name", ["legacy_convnet_v0.1", "legacy_mlp_v0.1"])
def test_checkpoints_written_by_lit_vision_0_1_still_load(name: str) -> None:
    """Files saved before the registry store ``_target_: lit_vision.models.ConvNet``; they load and predict as then."""
    path = DATA / f"{name}.ckpt"
    assert "_target_" in read_checkpoint(path)["hyper_parameters"]["net"]  # really the old format
    model = load_classifier(path)
    images = np.round(load_digits().images[:8] * (255 / 16)).astype(np.uint8)[:, None]
    with torch.no_grad():
        probs = model.probabilities(model(torch.from_numpy(images))).numpy()
    expected = json.loads((DATA / "legacy_outputs.json").read_text())["probs"][name]
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert model.hparams.net["name"] in ("convnet", "mlp") and "_target_" not in model.hparams.net


def test_new_checkpoints_store_the_name_not_the_import_path(make_cfg) -> None:
    from lit_vision.commands.train import run

    cfg = make_cfg("model=dense", "model.net.hidden=[4]", "trainer.max_epochs=1", "accelerator=cpu",
                   "~callbacks.progress_bar", "~callbacks.model_summary", "test=false", "validate_best=false")
    run(cfg)
    hparams = read_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hparams["net"]["name"] == "mlp" and "_target_" not in hparams["net"]
