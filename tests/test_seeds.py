"""lit_vision.runs.seeds: which runs differ only in their seed, and mean ± sample std over them (no training)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import yaml

from lit_vision.runs.paths import NEVER, timing_cells
from lit_vision.runs.seeds import (
    flatten,
    group_indices,
    mean_std,
    read_config,
    read_overrides,
    seed_groups,
    seed_markdown,
    stat_cell,
    write_seed_csv,
)


def config(seed: int = 1, lr: float = 0.01, **top: object) -> dict:
    """A flattened saved config as :func:`read_config` returns it."""
    return flatten({"task_name": "horse_cnn", "seed": seed, "resume": None, "ckpt_path": None,
                    "model": {"optimizer": {"lr": lr}}, "data": {"seed": "${seed}", "cache_dir": "${paths.cache_dir}"},
                    "paths": {"root_dir": "/a", "output_dir": "${hydra:runtime.output_dir}"},
                    "trainer": {"default_root_dir": "${paths.output_dir}", "max_epochs": 3},
                    "callbacks": {"model_checkpoint": {"dirpath": "/a/checkpoints", "monitor": "val/loss"}}} | top)


def test_configs_differing_only_in_seed_and_locations_group():
    moved = config(seed=2) | {"paths.root_dir": "/elsewhere", "callbacks.model_checkpoint.dirpath": "/b",
                              "trainer.default_root_dir": "/b", "data.cache_dir": "/c", "resume": "/old/run"}
    continued = config(seed=3) | {"ckpt_path": "last"}
    assert group_indices([config(seed=1), moved, continued]) == [[0, 1, 2]]


@pytest.mark.parametrize("other", [
    config(lr=0.001),                                          # a hyperparameter
    config() | {"trainer.max_epochs": 4},                     # any other key
    config() | {"callbacks.model_checkpoint.monitor": "val/acc"},
    config() | {"ckpt_path": "/runs/cnn/checkpoints/best.ckpt"},  # another model scored or fine-tuned
    config() | {"task_name": "horse_vgg"},
    {k: v for k, v in config().items() if k != "trainer.max_epochs"},  # a key missing
])
def test_configs_differing_in_anything_else_do_not_group(other: dict):
    assert group_indices([config(seed=1), other | {"seed": 2}]) == [[0], [1]]


def test_runs_without_config_are_never_grouped():
    assert group_indices([None, config(seed=1), None, config(seed=2)]) == [[0], [1, 3], [2]]


def test_read_config_and_overrides(tmp_path: Path):
    assert read_config(tmp_path) is None and read_overrides(tmp_path) == {}
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 3, "model": {"net": {"width": 8}},
                                                                    "tags": ["a"], "data": {"seed": "${seed}"}}))
    (tmp_path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed=3", "+model.extra=1", "~logger"]))
    assert read_config(tmp_path) == {"seed": 3, "model.net.width": 8, "tags": ["a"], "data.seed": "${seed}"}
    assert read_overrides(tmp_path) == {"seed": "3", "model.extra": "1", "logger": ""}


def test_mean_and_sample_std_on_known_numbers():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3))  # ddof=1: sum of squares 5 over n-1 = 3
    assert math.isnan(mean_std([0.9])[1]) and math.isnan(mean_std([])[0])
    assert stat_cell([0.88, 0.90, 0.86]) == "0.8800 ± 0.0200"
    assert stat_cell([14.0, 14.5]) == "14.25 ± 0.35"
    assert stat_cell([0.9]) == "0.9000"


def test_never_reached_is_not_averaged_away():
    assert stat_cell([4.0, NEVER, 5.0]) == "2 of 3 reached: 4.500 ± 0.707"
    assert stat_cell([4.0, NEVER]) == "1 of 2 reached: 4.000"
    assert stat_cell([NEVER, NEVER, NEVER]) == "0 of 3 reached"
    assert stat_cell([0.9, None, 0.8]) == "2 of 3 have it: 0.8500 ± 0.0707"
    assert stat_cell([None, None]) == ""


def test_timing_cells():
    record = {"epochs_trained": 7, "train_seconds": 90.0,
              "time_to_val_acc": {"0.8": {"epoch": 2, "seconds": 30.0}, "0.9": None,
                                  "0.95": {"epoch": 6, "seconds": None}}}
    assert timing_cells(record) == {"epochs": 7, "train min": 1.5, "min to val/acc 0.8": 0.5,
                                    "min to val/acc 0.9": NEVER, "min to val/acc 0.95": None}
    assert timing_cells({"test/acc": 0.9, "time_to_val_acc": None}) == {}  # unknown is not "never"


def test_seed_groups_leave_out_unfinished_runs_and_name_the_groups(tmp_path: Path):
    configs = [config(1), config(2), config(3), config(1, lr=0.1), config(2, lr=0.1), None]
    overrides = [{"seed": str(c["seed"]), "model.optimizer.lr": str(c["model.optimizer.lr"])} for c in configs[:5]]
    overrides.append({})
    rows = [{"val/acc": 0.8}, {"val/acc": 0.9}, {"val/acc": None}, {"val/acc": 0.5}, {"val/acc": 0.7},
            {"val/acc": 0.99}]
    status = ["ok", "ok", "failed", "ok", "ok", "ok"]
    groups = seed_groups(rows, configs, overrides, ["val/acc"], status=status, names=[f"job {i}" for i in range(6)])
    assert [g.name for g in groups] == ["horse_cnn model.optimizer.lr=0.01", "horse_cnn model.optimizer.lr=0.1"]
    assert [g.seeds for g in groups] == [[1, 2], [1, 2]] and [g.n for g in groups] == [2, 2]
    assert groups[0].not_finished == ["job 2 (seed 3: failed)"] and groups[1].not_finished == []
    assert groups[0].values["val/acc"] == [0.8, 0.9]  # the failed run's blank is not a member's value
    path = write_seed_csv(tmp_path / "seeds.csv", groups, ["val/acc", "test/auroc"])
    with open(path, newline="") as f:
        written = list(csv.DictReader(f))
    assert list(written[0]) == ["group", "n", "seeds", "not finished", "val/acc mean", "val/acc std", "val/acc n"]
    assert float(written[0]["val/acc mean"]) == pytest.approx(0.85)
    assert float(written[1]["val/acc std"]) == pytest.approx(math.sqrt(0.02))
    assert written[0]["seeds"] == "1, 2" and written[0]["val/acc n"] == "2"
    md = seed_markdown(groups, ["val/acc"])
    assert "| horse_cnn model.optimizer.lr=0.01 | 2 | 1, 2 | job 2 (seed 3: failed) | 0.8500 ± 0.0707 |" in md


def test_groups_with_equal_overrides_are_named_by_their_configs():
    """Same command line, other defaults (e.g. another code version): the config keys tell them apart."""
    configs = [config(1), config(2), config(1) | {"trainer.max_epochs": 9}, config(2) | {"trainer.max_epochs": 9}]
    overrides = [{"seed": str(c["seed"])} for c in configs]
    groups = seed_groups([{}] * 4, configs, overrides, [])
    assert [g.label for g in groups] == ["trainer.max_epochs=3", "trainer.max_epochs=9"]
