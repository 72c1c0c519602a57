"""steps_per_execution: k optimizer steps per Lightning step train exactly what k=1 trains, and refuse what they
cannot honour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST, compose_config

from lit_vision.commands.runner import seed
from lit_vision.commands.train import run
from lit_vision.config import validate_config
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.device_batches import DeviceBatches
from lit_vision.errors import ConfigError
from lit_vision.training.builders import build_datamodule
from lit_vision.training.checkpoints import CheckpointError

QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=false",
         "trainer.max_epochs=2", "callbacks.early_stopping=null"]
KEYS = ("test/acc", "test/loss", "val/acc", "val/loss", "global_step", "epochs_trained")


@pytest.mark.parametrize("model, extra", [
    ("dense", []),                                                 # Adam, fp32
    ("cnn", ["trainer.precision=bf16-mixed"]),                     # dropout, channels_last, bf16 autocast
    ("dense", ["model.scheduler.name=cosine", "model.optimizer.name=sgd", "model.optimizer.lr=0.05"]),
])
def test_grouped_steps_train_exactly_what_single_steps_train(tmp_path: Path, model: str, extra: list[str]) -> None:
    def train(steps: int) -> dict:
        cfg = compose_config([f"model={model}", *QUIET, *extra, f"steps_per_execution={steps}"], tmp_path / str(steps))
        seed(cfg.seed)  # as every command does (runner.execute)
        return run(cfg)

    single, grouped = train(1), train(4)
    for key in KEYS:
        assert grouped[key] == pytest.approx(single[key], rel=1e-5, abs=1e-6), key
    assert grouped["global_step"] == single["global_step"] > 0  # optimizer steps, not groups


def test_a_group_is_the_concatenation_of_consecutive_batches(make_cfg) -> None:
    arrays = ImageArrays(np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1), np.arange(50), ['x'])
    single = [y for _, y in DeviceBatches(arrays, 4, True, torch.device("cpu"), seed=3)]
    grouped = [y for _, y in DeviceBatches(arrays, 12, True, torch.device("cpu"), seed=3)]
    assert [g.tolist() for g in grouped] == [torch.cat(single[i:i + 3]).tolist() for i in range(0, len(single), 3)]
    dm = build_datamodule(make_cfg("data.on_device=false", "data.batch_size=8"))
    dm.group_train_batches(5)
    assert dm.train_dataloader().batch_size == 40


@pytest.mark.parametrize("override, message", [
    ("model.scheduler.name=plateau", "plateau"),
    ("+trainer.gradient_clip_val=1.0", "gradient_clip_val"),
    ("+trainer.accumulate_grad_batches=2", "accumulate_grad_batches"),
    ("callbacks.last_checkpoint.every_n_train_steps=6", "multiple of 4"),
    ("steps_per_execution=0", "steps_per_execution"),
])
def test_settings_grouped_steps_cannot_honour_are_refused(make_cfg, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate_config(make_cfg("steps_per_execution=4", override))
    validate_config(make_cfg("steps_per_execution=4", "callbacks.last_checkpoint.every_n_train_steps=8"))


def test_resume_across_optimisation_modes_is_refused(make_cfg) -> None:
    base = ["model=dense", "accelerator=cpu", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "~callbacks.progress_bar", "~callbacks.model_summary"]
    first = run(make_cfg(*base, "trainer.max_epochs=1", "steps_per_execution=2"))
    assert first["global_step"] == 8
    with pytest.raises(CheckpointError, match="steps_per_execution=2"):
        run(make_cfg(*base, "trainer.max_epochs=2", "ckpt_path=last", "steps_per_execution=1"))
    second = run(make_cfg(*base, "trainer.max_epochs=2", "ckpt_path=last", "steps_per_execution=4"))
    assert second["global_step"] == 8 + 16  # 4 groups of 4 steps in the second epoch


def test_fast_dev_run_with_grouped_steps(make_cfg) -> None:
    record = run(make_cfg(*FAST, "steps_per_execution=3"))
    assert record["global_step"] == 3
