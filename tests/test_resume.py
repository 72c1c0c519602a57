"""Resume: a run SIGKILLed mid-training continues in the same run dir with one override (resume=<run dir>)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import FAST

from lit_vision.commands.train import run
from lit_vision.training.checkpoints import CheckpointError, resolve_ckpt_path

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]
STEPS_PER_EPOCH = 20  # trainer.limit_train_batches (digits has 41 batches of 32)
EPOCHS = 2


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lit_vision.train", "model=dense", "accelerator=cpu", "data.batch_size=32",
            f"trainer.max_epochs={EPOCHS}", f"trainer.limit_train_batches={STEPS_PER_EPOCH}",
            "callbacks.early_stopping.patience=100", *QUIET, *args]


def env() -> dict[str, str]:
    return {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended (rc {proc.returncode}) before {path} was written"
        assert time.monotonic() < deadline, f"{path} not written within {timeout}s"
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_mid_training_then_resume_with_one_override(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cache = f"paths.cache_dir={tmp_path / 'cache'}"
    # a step-level last.ckpt every 5 steps, so the kill lands mid-epoch (the first save is at step 5 of epoch 0)
    proc = subprocess.Popen(train_cmd(f"hydra.run.dir={run_dir}", cache,
                                      "callbacks.last_checkpoint.every_n_train_steps=5"),
                            cwd=REPO, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = run_dir / "checkpoints" / "last.ckpt"
    try:
        wait_for(last, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    killed_at = torch.load(last, weights_only=True)["global_step"]
    assert 0 < killed_at < EPOCHS * STEPS_PER_EPOCH
    assert not (run_dir / "metrics.json").exists()

    res = subprocess.run(train_cmd(f"resume={run_dir}", cache), cwd=REPO, env=env(), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    runs = [p for p in (REPO / "outputs").glob("train/runs/*") if p.stat().st_mtime > time.time() - 5]
    assert not runs, f"resume created a new run dir {runs}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["resumed_from"] == str(last.resolve())
    assert metrics["epochs_trained"] == EPOCHS
    # no finished step was repeated: the resumed run stops at exactly EPOCHS epochs' worth of optimizer steps
    assert metrics["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert torch.load(last, weights_only=True)["global_step"] == EPOCHS * STEPS_PER_EPOCH
    history = (run_dir / "history.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in history[1:]] == [str(e) for e in range(EPOCHS)]
    assert "test/acc" in metrics


def test_ckpt_path_last_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nothing to resume"):
        resolve_ckpt_path("last", tmp_path)
    assert resolve_ckpt_path("auto", tmp_path) is None  # auto: a fresh start
    assert resolve_ckpt_path(None, tmp_path) is None


def test_requeued_slurm_job_resumes_automatically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.parent.mkdir()
    last.write_bytes(b"x")
    assert resolve_ckpt_path(None, tmp_path) is None
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert resolve_ckpt_path(None, tmp_path) == str(last)
    hpc = tmp_path / "hpc_ckpt_1.ckpt"  # Lightning's SLURM requeue checkpoint, newer than last.ckpt
    hpc.write_bytes(b"y")
    os.utime(last, (1, 1))
    assert resolve_ckpt_path("auto", tmp_path) == str(hpc)


def test_resume_of_missing_run_dir_is_a_clear_error(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such run directory"):
        run(make_cfg(*FAST, f"resume={tmp_path / 'nope'}"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="check the path"):
        run(make_cfg(*FAST, f"resume={tmp_path / 'empty'}"))


def test_resume_in_process_finishes_remaining_epochs(make_cfg) -> None:
    """Same thing in-process and quick: 1 epoch, then ckpt_path=last with max_epochs=2 trains exactly one more."""
    base = ["model=dense", "accelerator=cpu", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", *QUIET]
    first = run(make_cfg(*base, "trainer.max_epochs=1"))
    assert first["global_step"] == 3
    second = run(make_cfg(*base, "trainer.max_epochs=2", "ckpt_path=last"))
    assert second["resumed_from"].endswith("last.ckpt") and second["global_step"] == 6


def test_fast_dev_run_ignores_no_checkpoint(make_cfg) -> None:
    assert run(make_cfg(*FAST))["resumed_from"] is None


class _FakeTrainer:
    """Just what FiniteModelCheckpoint._save_checkpoint touches."""

    is_global_zero = True
    global_step = 3
    loggers: list = []

    def __init__(self, module: torch.nn.Module, crash: bool = False) -> None:
        self.lightning_module = module
        self.crash = crash

    def save_checkpoint(self, path: str, weights_only: bool = False) -> None:
        Path(path).write_bytes(b"half a checkpoint")
        if self.crash:
            raise KeyboardInterrupt("killed while saving")


def test_checkpoint_writes_are_atomic_and_never_nan(tmp_path: Path) -> None:
    from lit_vision.training.checkpoints import FiniteModelCheckpoint

    good = tmp_path / "last.ckpt"
    good.write_bytes(b"GOOD")
    cb = FiniteModelCheckpoint(dirpath=tmp_path, filename="last")
    with pytest.raises(KeyboardInterrupt):  # killed mid-write: the previous file is intact
        cb._save_checkpoint(_FakeTrainer(torch.nn.Linear(2, 2), crash=True), str(good))
    assert good.read_bytes() == b"GOOD"
    poisoned = torch.nn.Linear(2, 2)
    with torch.no_grad():
        poisoned.weight[0, 0] = float("nan")
    cb._save_checkpoint(_FakeTrainer(poisoned), str(good))  # NaN weights: refused
    assert good.read_bytes() == b"GOOD"
    cb._save_checkpoint(_FakeTrainer(torch.nn.Linear(2, 2)), str(good))  # finite: written (atomically)
    assert good.read_bytes() == b"half a checkpoint" and not list(tmp_path.glob("*.partial"))


def test_a_resumed_run_appends_to_metrics_csv_instead_of_replacing_it(tmp_path: Path) -> None:
    """history.csv of a resumed run keeps the epochs logged before the kill."""
    from lit_vision.runs.history import write_history
    from lit_vision.training.callbacks import RunDirCSVLogger

    first = RunDirCSVLogger(save_dir=str(tmp_path), name="", version="")
    first.log_metrics({"epoch": 0, "val/acc": 0.5}, step=4)
    first.save()
    resumed = RunDirCSVLogger(save_dir=str(tmp_path), name="", version="")
    resumed.keep_existing = True
    resumed.log_metrics({"epoch": 1, "val/acc": 0.7, "train/loss": 0.3}, step=9)
    resumed.save()
    rows = write_history(tmp_path / "metrics.csv", tmp_path / "history.csv")
    assert [(r["epoch"], r["val/acc"]) for r in rows] == [(0, 0.5), (1, 0.7)] and rows[1]["train/loss"] == 0.3
    fresh = RunDirCSVLogger(save_dir=str(tmp_path), name="", version="")  # not resuming: replaced, as before
    fresh.log_metrics({"epoch": 0, "val/acc": 0.9}, step=4)
    fresh.save()
    assert [(r["epoch"], r["val/acc"])
            for r in write_history(tmp_path / "metrics.csv", tmp_path / "h2.csv")] == [(0, 0.9)]
