"""Exact mid-epoch resume: a run stopped mid-epoch (checkpoint every N steps) and resumed continues the same epoch
in the same order — no image twice, none skipped — with the same augmentation and dropout draws, so its
history.csv equals an uninterrupted run's with the same seed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from lit_vision.commands.runner import seed
from lit_vision.commands.train import run as run_unseeded
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.datamodule import ArrayDataset, keep_batch
from lit_vision.data.device_batches import DeviceBatches
from lit_vision.data.epoch_order import EpochOrder, LoaderStateError, ResumableDataLoader
from lit_vision.runs.history import read_history

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]
#: dropout and flips draw random numbers every step: a resume that lost the generators' state shows in the metrics
RANDOM_TRAINING = ["model=dense", "model.net.dropout=0.3", "data.augment.hflip=true", "accelerator=cpu",
                   "data.batch_size=64", "trainer.max_epochs=2", "callbacks.early_stopping.patience=100",
                   "test=false", "validate_best=false", *QUIET]
SEEN: list[tuple[int, str]] = []  # (epoch, digest of the batch the model trained on), filled by RecordBatches


class RecordBatches(Callback):
    """Records every batch the model trained on, as it got it (after the transfer and the augmentation)."""

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        x, y = batch
        digest = hashlib.sha1(x.cpu().numpy().tobytes() + y.cpu().numpy().tobytes()).hexdigest()
        SEEN.append((trainer.current_epoch, digest))


class StopAt(Callback):
    """Interrupts training after the step-``step`` checkpoint, before the next batch, as a preemption would
    (at the next batch's start: Lightning runs checkpoint callbacks last in each hook)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise InterruptedError(f"stopped at step {self.step}")


def run(cfg: Any) -> dict[str, Any]:
    seed(cfg.seed)  # as every command does (runner.execute)
    return run_unseeded(cfg)


def arrays(n: int) -> ImageArrays:
    return ImageArrays(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n) % 3, ["a", "b", "c"])


def served(loader: Any, batches: int | None = None) -> list[int]:
    out = []
    for i, (x, _) in enumerate(loader):
        out += x.flatten().tolist()
        if batches is not None and i + 1 == batches:
            break
    return out


def data_loader(n: int, batch_size: int) -> ResumableDataLoader:
    return ResumableDataLoader(ArrayDataset(arrays(n)), batch_size=batch_size, collate_fn=keep_batch,
                               sampler=EpochOrder(n, seed=7))


@pytest.mark.parametrize("kind", ["dataloader", "device"])
def test_a_loader_restored_mid_epoch_serves_the_rest_of_that_epoch(kind: str) -> None:
    def make(batch_size: int = 8) -> Any:
        if kind == "device":
            return DeviceBatches(arrays(50), batch_size, True, torch.device("cpu"), seed=7)
        return data_loader(50, batch_size)

    full = make()
    full.sampler.set_epoch(3)
    epoch3 = served(full)
    assert sorted(epoch3) == list(range(50))
    first = make()
    first.sampler.set_epoch(3)
    head = served(first, batches=4)
    state = first.state_dict()
    assert state["epoch"] == 3 and state["batches"] == 4 and state["order"].tolist() != list(range(50))
    resumed = make()
    resumed.load_state_dict(state)
    resumed.sampler.set_epoch(3)  # what Lightning does before the resumed epoch
    tail = served(resumed)
    assert head + tail == epoch3  # the same order: none twice, none skipped
    assert resumed.state_dict()["batches"] == len(resumed) == 7
    resumed.sampler.set_epoch(4)
    assert sorted(served(resumed)) == list(range(50)) and served(make()) != epoch3  # later epochs: whole, reshuffled


def test_grouped_batches_count_in_groups() -> None:
    """steps_per_execution=k serves k batches as one: the position counts the groups the loader served."""
    first = data_loader(50, 24)
    head = served(first, batches=1)
    resumed = data_loader(50, 24)
    resumed.load_state_dict(first.state_dict())
    assert head + served(resumed) == served(data_loader(50, 24)) and len(head) == 24


def test_a_position_from_another_batch_size_is_refused() -> None:
    first = data_loader(50, 8)
    served(first, batches=2)
    with pytest.raises(LoaderStateError, match="batch_size: checkpoint 8 vs now 16"):
        data_loader(50, 16).load_state_dict(first.state_dict())


def history_without_times(run_dir: Path) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.startswith("time/")}
            for row in read_history(run_dir / "history.csv")]


LOOKAHEAD = ["model.lookahead={every: 3, start_epoch: 0, power: 0}"]  # its running average is checkpointed too


#: a per-step schedule reads the planned step count in configure_optimizers, which builds the training loader before
#: the checkpoint is restored (Lightning #20550): the data module's own state must carry the loader's position
ONECYCLE = ["model.scheduler.name=onecycle"]


# a DataLoader, or batches sliced on the device; with lookahead, whose average must survive the interruption; and
# with OneCycle
@pytest.mark.parametrize("on_device, extra", [("false", []), ("true", []), ("true", LOOKAHEAD), ("false", ONECYCLE),
                                              ("true", ONECYCLE)],
                         ids=["dataloader", "device", "device-lookahead", "dataloader-onecycle", "device-onecycle"])
def test_stopped_mid_epoch_and_resumed_equals_uninterrupted(make_cfg, tmp_path: Path, on_device: str,
                                                            extra: list[str]) -> None:
    recorder = ["+callbacks.record._target_=test_exact_resume.RecordBatches", f"data.on_device={on_device}", *extra]
    SEEN.clear()
    whole = make_cfg(*RANDOM_TRAINING, *recorder)
    run(whole)
    uninterrupted, SEEN[:] = list(SEEN), []
    run_dir = Path(whole.paths.output_dir)
    history = history_without_times(run_dir)
    os.rename(run_dir, tmp_path / "uninterrupted")  # the next runs get the same (empty) run dir

    steps = "callbacks.last_checkpoint.every_n_train_steps=7"  # 21 steps an epoch: step 28 is mid-epoch 1
    with pytest.raises(InterruptedError):
        run(make_cfg(*RANDOM_TRAINING, *recorder, steps, "+callbacks.stop._target_=test_exact_resume.StopAt",
                     "+callbacks.stop.step=28"))
    record = run(make_cfg(*RANDOM_TRAINING, *recorder, steps, "ckpt_path=last"))
    assert record["resumed_from"].endswith("last.ckpt") and record["global_step"] == 42
    # the first run trained batches 0..27; the resumed one 28..41: together exactly the uninterrupted sequence
    assert SEEN == uninterrupted and len(SEEN) == 42
    assert history_without_times(run_dir) == history and len(history) == 2


@pytest.mark.slow
def test_sigkilled_mid_epoch_then_resumed_equals_uninterrupted(tmp_path: Path) -> None:
    """The same after a SIGKILL (no clean shutdown): every row of history.csv but the wall times is identical."""
    def train(run_dir: Path, *extra: str) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "lit_vision.train", *RANDOM_TRAINING, f"hydra.run.dir={run_dir}",
               f"paths.cache_dir={tmp_path / 'cache'}", "report.plots=false", *extra]
        return subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    whole = train(tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()[-3000:] if whole.stderr else ""
    killed_dir = tmp_path / "killed"
    proc = train(killed_dir, "callbacks.last_checkpoint.every_n_train_steps=5")
    last = killed_dir / "checkpoints" / "last.ckpt"
    try:
        while proc.poll() is None:  # kill it once a checkpoint from inside epoch 1 exists
            if last.exists() and 21 < torch.load(last, weights_only=True)["global_step"] < 42:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "training finished before a mid-epoch checkpoint of epoch 1 was seen"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    resumed = train(killed_dir, "callbacks.last_checkpoint.every_n_train_steps=5", f"resume={killed_dir}")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:] if resumed.stderr else ""
    assert history_without_times(killed_dir) == history_without_times(tmp_path / "whole")


WHITENING = ["model=cnn", "model.net.head.hidden=[]",
             "model.net.features=[{whiten: 8, kernel: 2, act: gelu},{conv: 8, kernel: 3, padding: same},{pool: 2}]"]


def test_a_resumed_run_keeps_the_whitening_stem_it_was_trained_with(make_cfg, monkeypatch) -> None:
    """The stem is fitted when the classifier is built (builders.build_classifier), resumed runs included; the
    checkpoint's fitted (frozen) filters then replace the new fit, whatever it gave."""
    from lit_vision.models.whitening import PatchWhitening

    base = [*WHITENING, "accelerator=cpu", "data.batch_size=64", "trainer.max_epochs=1", "test=false",
            "validate_best=false", "callbacks.last_checkpoint.every_n_train_steps=7", *QUIET]
    with pytest.raises(InterruptedError):
        run(make_cfg(*base, "+callbacks.stop._target_=test_exact_resume.StopAt", "+callbacks.stop.step=14"))
    cfg = make_cfg(*base, "ckpt_path=last")
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    trained = torch.load(last, weights_only=True)["state_dict"]["net.features.0.weight"]
    fit = PatchWhitening.fit

    def other_fit(stem: PatchWhitening, images: torch.Tensor) -> None:  # a refit that differs, were it kept
        fit(stem, images)
        stem.weight.mul_(-1)

    monkeypatch.setattr(PatchWhitening, "fit", other_fit)
    assert run(cfg)["global_step"] == 21
    assert torch.equal(torch.load(last, weights_only=True)["state_dict"]["net.features.0.weight"], trained)
