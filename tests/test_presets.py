"""Every config preset composes, and every experiment preset runs fast_dev_run on synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, accuracy_from_predictions

from lit_vision.commands.train import run
from lit_vision.config import CONF_DIR

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
GROUPS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml") if not p.stem.startswith("_"))
          for g in ("data", "model", "trainer", "accelerator", "callbacks", "logger", "debug")}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    assert cfg.trainer._target_.endswith("Trainer")
    assert cfg.data._target_ and cfg.data.name and cfg.model.net.name


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.task_name and cfg.model.net.name


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(make_cfg, synthetic_roots, experiment):
    """Every preset, on synthetic data in its source's real on-disk format (digits needs none)."""
    name = make_cfg(f"experiment={experiment}").data.name
    overrides = [] if name == "digits" else [f"data.root={synthetic_roots[name]}"]
    if name == "fer_happy_sad":  # the notebook's 4818/302 per class do not fit the synthetic folders
        overrides.append("data.mapping.per_class={train:8,test:3}")
    # fp32: predictions.csv comes from the deployment path (fp32) and must agree with the test's accuracy image by
    # image; under bf16 autocast an untrained net's near-ties (top-2 within bf16's error) may flip between the two
    cfg = make_cfg(f"experiment={experiment}", *overrides, *FAST, "data.batch_size=8", "trainer.precision=32-true")
    record = run(cfg)
    assert record["test/acc"] == pytest.approx(accuracy_from_predictions(cfg.paths.output_dir), abs=1e-6)
    assert sum(record["support"].values()) == len(run_test_set(cfg, record))
    if name == "fer_happy_sad":  # balanced 3 + 3 test images, notebook 004's label order
        assert record["class_names"] == ["sad", "happy"] and record["support"] == {"sad": 3, "happy": 3}
    assert Path(cfg.paths.output_dir, "metrics.json").exists()


def run_test_set(cfg, record) -> list[int]:
    """Test labels as predictions.csv lists them (one row per test image)."""
    lines = Path(cfg.paths.output_dir, "predictions.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[2]) for line in lines]


FIXED_EPOCH_PRESETS = ["fashion_cnn", "fashion_cnn_final", "fashion_dense", "fer_backbone_pretrain", "fer_custom_cnn",
                       "fer_custom_cnn_aug", "fer_vgg16", "horse_cnn", "horse_cnn_aug", "mnist_cnn", "mnist_dense_mse",
                       "cifar10_fast", "fashion_best", "mnist_best", "fer2013_best", "fer_happy_sad_best",
                       "cifar10_best", "photo_finetune"]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_early_stopping_is_off_by_absence_not_by_patience(make_cfg, experiment):
    """Presets that train a fixed number of epochs have no EarlyStopping callback (not patience == max_epochs)."""
    from lightning.pytorch.callbacks import EarlyStopping

    from lit_vision.training.builders import instantiate_group

    cfg = make_cfg(f"experiment={experiment}")
    stoppers = [cb for cb in instantiate_group(cfg.callbacks) if isinstance(cb, EarlyStopping)]
    if experiment in FIXED_EPOCH_PRESETS:
        assert stoppers == []
    else:
        assert len(stoppers) == 1 and stoppers[0].patience < cfg.trainer.max_epochs


# cnn_optuna: "for any ConvNet preset"
SEARCHES = [("fashion_optuna", "fashion_cnn_final"), ("fashion_lr_dropout_batch", "fashion_cnn")] + [
    ("cnn_optuna", e) for e in EXPERIMENTS
    if not e.startswith(("fashion_dense", "mnist_dense", "fer_vgg", "fer_backbone", "photo_finetune"))]


@pytest.mark.parametrize("search,experiment", SEARCHES)
def test_optuna_spaces_address_named_knobs(make_cfg, search, experiment):
    """Every searched key exists in the composed config, names a knob, not a list position, and every value of the
    space passes the training's own checks (lit_vision.tune's up-front check)."""
    from lit_vision.commands.tune import check_options

    cfg = make_cfg(f"experiment={experiment}", f"hparams_search={search}", config_name="tune")
    keys = list(cfg.tune.space)
    assert keys
    for key in keys:
        assert not any(part.isdigit() for part in key.split(".")), key
    check_options(cfg)
