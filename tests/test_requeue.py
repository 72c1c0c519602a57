"""The SLURM requeue checkpoint (training/requeue.py), in-process: the signal is sent from a callback, ``scontrol``
is a script that records its arguments, and the SLURM job is described by its environment variables."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from test_exact_resume import QUIET, run

from lit_vision.training.checkpoints import next_hpc_checkpoint

STEPS_PER_EPOCH = 21  # digits: 1,293 training images in batches of 64
BASE = ["model=dense", "accelerator=cpu", "data.batch_size=64", "trainer.max_epochs=3",
        "callbacks.early_stopping.patience=100", "test=false", "validate_best=false", *QUIET]


class SignalAt(Callback):
    """Sends SLURM's requeue signal to this process at the end of the batch that makes global step ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGUSR1)


@pytest.fixture
def slurm_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-task SLURM job's environment, with an ``scontrol`` that logs its calls to the returned file."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol.log"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for key, value in {"SLURM_NTASKS": "1", "SLURM_JOB_ID": "77", "SLURM_JOB_NAME": "lit-vision",
                       "SLURM_NODELIST": "localhost", "SLURM_PROCID": "0", "SLURM_LOCALID": "0",
                       "SLURM_NODEID": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("SLURM_ARRAY_JOB_ID", raising=False)
    return calls


def signalled_run(make_cfg, step: int) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(make_cfg(*BASE, "+callbacks.signal._target_=test_requeue.SignalAt", f"+callbacks.signal.step={step}"))
    assert exit_info.value.code == 0


def saved_step(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])


def test_the_next_requeue_checkpoint_follows_the_highest_number(tmp_path: Path) -> None:
    assert next_hpc_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_1.ckpt"
    for name in ("hpc_ckpt_1.ckpt", "hpc_ckpt_10.ckpt", "hpc_ckpt_x.ckpt"):
        (tmp_path / name).touch()
    assert next_hpc_checkpoint(tmp_path) == tmp_path / "hpc_ckpt_11.ckpt"


def test_requeues_at_an_epochs_end_and_just_after_it_train_every_step_once(make_cfg, slurm_job: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # signalled on epoch 0's last batch: saved one batch later (a checkpoint from the last batch, resumed and
    # requeued again early in epoch 1, would make Lightning 2.6 train epoch 1's first batches twice)
    signalled_run(make_cfg, STEPS_PER_EPOCH)
    run_dir = Path(make_cfg().paths.output_dir)
    assert saved_step(run_dir / "hpc_ckpt_1.ckpt") == STEPS_PER_EPOCH + 1
    assert slurm_job.read_text().split("\n")[0] == "requeue 77"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # the requeued job: resumes from hpc_ckpt_1, signalled again
    signalled_run(make_cfg, STEPS_PER_EPOCH + 2)
    assert saved_step(run_dir / "hpc_ckpt_2.ckpt") == STEPS_PER_EPOCH + 2
    record = run(make_cfg(*BASE))  # the second requeue: resumes from hpc_ckpt_2 and finishes
    assert record["resumed_from"].endswith("hpc_ckpt_2.ckpt")
    assert (record["epochs_trained"], record["global_step"]) == (3, 3 * STEPS_PER_EPOCH)
