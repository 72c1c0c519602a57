"""Wall time of a training run: per-epoch seconds in history.csv, train_seconds and time_to_val_acc in metrics.json."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from lit_vision.checks import fraction_list
from lit_vision.commands.train import run
from lit_vision.errors import ConfigError
from lit_vision.runs import reporting
from lit_vision.training import callbacks
from lit_vision.training.callbacks import EpochTimer

QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary"]

ROWS = [  # hand-made history.csv rows; cumulative seconds are not epoch * constant, so a wrong row shows
    {"epoch": 0.0, "val/acc": 0.55, "time/epoch_seconds": 2.0, "time/train_seconds": 2.0},
    {"epoch": 1.0, "val/acc": 0.81, "time/epoch_seconds": 3.5, "time/train_seconds": 5.5},
    {"epoch": 2.0, "val/acc": 0.79, "time/epoch_seconds": 1.0, "time/train_seconds": 6.5},
    {"epoch": 3.0, "val/acc": 0.93, "time/epoch_seconds": 4.0, "time/train_seconds": 10.5},
]


# --- the pure functions ----------------------------------------------------------------------------
def test_first_epoch_reaching_each_threshold_with_its_cumulative_seconds() -> None:
    assert reporting.time_to_thresholds(ROWS, [0.8, 0.9]) == {
        "0.8": {"epoch": 1, "seconds": 5.5},  # epoch 2 dips below 0.8 again: the first epoch counts
        "0.9": {"epoch": 3, "seconds": 10.5},
    }


def test_threshold_never_reached_is_none_and_an_exact_hit_counts() -> None:
    result = reporting.time_to_thresholds(ROWS, [0.95, 0.81, 1.0])
    assert result == {"0.95": None, "0.81": {"epoch": 1, "seconds": 5.5}, "1.0": None}
    assert json.loads(json.dumps(result))["0.95"] is None  # JSON null, not a missing key


def test_thresholds_keep_their_order_and_rows_their_epochs() -> None:
    shuffled = [ROWS[3], ROWS[0], ROWS[2], ROWS[1]]  # first *epoch*, not first row
    result = reporting.time_to_thresholds(shuffled, [0.9, 0.5, 0.8])
    assert list(result) == ["0.9", "0.5", "0.8"]
    assert result == {"0.9": {"epoch": 3, "seconds": 10.5}, "0.5": {"epoch": 0, "seconds": 2.0},
                      "0.8": {"epoch": 1, "seconds": 5.5}}


def test_epochs_without_validation_or_timer_columns() -> None:
    rows = [{"epoch": 0.0, "train/acc": 0.99}, {"epoch": 1.0, "val/acc": 0.85}]  # no val in epoch 0, no timer
    assert reporting.time_to_thresholds(rows, [0.8]) == {"0.8": {"epoch": 1, "seconds": None}}
    assert reporting.train_seconds(rows, fallback=7.0) == 7.0
    assert reporting.train_seconds(ROWS[::-1]) == 10.5  # the last epoch's total, whatever the row order


def test_timing_record_and_line() -> None:
    record = reporting.timing_record(ROWS, [0.8, 0.95])
    assert record == {"train_seconds": 10.5,
                      "time_to_val_acc": {"0.8": {"epoch": 1, "seconds": 5.5}, "0.95": None}}
    assert reporting.timing_line(record) == "trained 10.5 s; val/acc reached 0.8 at epoch 1 (5.5 s), 0.95 never"
    # no history (logger=none, fast_dev_run): the total from the timer, the thresholds unknown rather than "never"
    no_history = reporting.timing_record([], [0.8], fallback_seconds=3.25)
    assert no_history == {"train_seconds": 3.25, "time_to_val_acc": None}
    assert reporting.timing_line(no_history).startswith("trained 3.2 s; no per-epoch history")


@pytest.mark.parametrize("value", [[1.5], [0.0], [-0.2], [float("nan")], 0.8, "0.8", [True], ["0.8"], None])
def test_time_to_setting_refuses_anything_but_fractions(value) -> None:
    with pytest.raises(ConfigError, match=r"report\.time_to"):
        fraction_list(value, "report.time_to")


def test_time_to_setting_accepts_fractions_up_to_one() -> None:
    assert fraction_list([0.5, 1, 1.0], "report.time_to") == [0.5, 1.0, 1.0]
    assert fraction_list([], "report.time_to") == []


# --- the callback, on a fake clock ------------------------------------------------------------------
class FakeModule:
    device = torch.device("cpu")

    def __init__(self) -> None:
        self.logged: dict[str, float] = {}

    def log(self, name: str, value: float, **kwargs) -> None:
        assert kwargs["on_epoch"] and not kwargs["on_step"]
        self.logged[name] = value


def test_epoch_timer_counts_training_not_validation_and_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0,  # on_train_epoch_start
                  5.0, 8.0,  # a validation inside the epoch (3 s): not training
                  10.0,  # on_train_epoch_end: 10 - 3 = 7 s of training
                  20.0, 21.5,  # epoch 1 starts at 20; a mid-epoch checkpoint at 21.5 (1.5 s so far)
                  ])
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: next(clock))
    trainer, sanity = SimpleNamespace(sanity_checking=False), SimpleNamespace(sanity_checking=True)
    module = FakeModule()
    timer = EpochTimer()
    timer.on_validation_start(sanity, module)  # the sanity check, before any epoch: ignored (reads no clock)
    timer.on_validation_end(sanity, module)
    timer.on_train_epoch_start(trainer, module)
    timer.on_validation_start(trainer, module)
    timer.on_validation_end(trainer, module)
    timer.on_train_epoch_end(trainer, module)
    assert module.logged == {"time/epoch_seconds": 7.0, "time/train_seconds": 7.0}
    timer.on_train_epoch_start(trainer, module)
    state = timer.state_dict()
    assert state == {"train_seconds": 7.0, "epoch_seconds_so_far": 1.5}

    # the killed run resumes from that checkpoint in a new process: no on_train_epoch_start for the restarted epoch
    clock = iter([100.0, 102.0])  # on_train_start, on_train_epoch_end: 2 s more of epoch 1
    resumed = EpochTimer()
    resumed.load_state_dict(state)
    resumed.on_train_start(trainer, module)
    resumed.on_train_epoch_end(trainer, module)
    assert module.logged == {"time/epoch_seconds": 3.5, "time/train_seconds": 10.5}
    resumed.on_train_end(trainer, module)
    resumed.teardown(trainer, module, "fit")
    # trainer.validate(ckpt_path=best) after the fit: restores the best epoch's state, is not timed (no clock read)
    resumed.load_state_dict({"train_seconds": 7.0, "epoch_seconds_so_far": None})
    resumed.on_validation_start(trainer, module)
    resumed.on_validation_end(trainer, module)
    resumed.teardown(trainer, module, "validate")
    assert resumed.train_seconds == 10.5
    assert resumed.state_dict() == {"train_seconds": 10.5, "epoch_seconds_so_far": None}


# --- a real run --------------------------------------------------------------------------------------
def test_a_run_records_its_training_seconds(make_cfg) -> None:
    cfg = make_cfg("trainer.max_epochs=2", *QUIET)
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    epoch_seconds = [float(r["time/epoch_seconds"]) for r in rows]
    assert len(epoch_seconds) == 2 and all(s > 0 for s in epoch_seconds)
    # cumulative column: each row's total is the sum of the epochs so far
    totals = [float(r["time/train_seconds"]) for r in rows]
    assert totals == pytest.approx([epoch_seconds[0], sum(epoch_seconds)], rel=1e-5)
    # the values go through Lightning as float32 tensors (relative rounding ~6e-8 each), so their sum agrees with
    # train_seconds to ~1e-7 relative; 1e-5 is far tighter than any real mistake (a validation pass counted as
    # training, an epoch counted twice or restarted from zero each cost whole percents)
    assert metrics["train_seconds"] == pytest.approx(sum(epoch_seconds), rel=1e-5)
    assert record["train_seconds"] == metrics["train_seconds"]
    # exactly the configured thresholds; each one is null (present) or the epoch and seconds of a history row
    assert list(metrics["time_to_val_acc"]) == ["0.8", "0.9"]
    by_epoch = {int(r["epoch"]): r for r in rows}
    for key, hit in metrics["time_to_val_acc"].items():
        reached = [e for e, r in sorted(by_epoch.items()) if float(r["val/acc"]) >= float(key)]
        if hit is None:
            assert reached == []
        else:
            assert hit["epoch"] == reached[0]
            assert hit["seconds"] == pytest.approx(float(by_epoch[hit["epoch"]]["time/train_seconds"]))
    assert math.isfinite(metrics["train_seconds"])


def test_time_to_out_of_range_is_a_config_error_naming_the_key(make_cfg) -> None:
    cfg = make_cfg("trainer.fast_dev_run=true", "report.time_to=[1.5]", *QUIET)
    with pytest.raises(ConfigError, match=r"report\.time_to=\[1\.5\]"):
        run(cfg)
