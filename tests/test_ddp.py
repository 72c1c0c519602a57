"""Devices and distributed runs: DDP on 2 CPU processes (gloo) through the real CLI, precision, compile, determinism."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAST

from lit_vision.commands.runner import execute
from lit_vision.commands.train import run
from lit_vision.config import validate_config
from lit_vision.data.synthetic import write_image_folder
from lit_vision.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]


def cli(args: list[str], timeout: int = 240, **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m lit_vision.train`` like a user would, from the repo root, on the CPU."""
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "0", **env}
    return subprocess.run([sys.executable, "-m", "lit_vision.train", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def odd_folders(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 classes, 15 test images: an odd count, so a padding DistributedSampler would duplicate one."""
    root = tmp_path_factory.mktemp("odd")
    write_image_folder(root / "train", ["a", "b", "c"], per_class=16, size=8, channels=1, seed=0)
    write_image_folder(root / "test", ["a", "b", "c"], per_class=5, size=8, channels=1, seed=1)
    return root


@pytest.mark.slow
def test_ddp_two_cpu_processes_one_run_dir_exact_counts(tmp_path: Path, odd_folders: Path) -> None:
    """``trainer=ddp accelerator=cpu``: gloo, SyncBatchNorm switched off (model=cnn has BatchNorm layers)."""
    logs = tmp_path / "outputs"
    res = cli(["trainer=ddp", "accelerator=cpu", "trainer.devices=2", "model=cnn", "data=image_folder",
               f"data.root={odd_folders}", "data.channels=1", "data.batch_size=8", "data.eval_batch_size=4",
               "trainer.max_epochs=2", f"paths.log_dir={logs}", f"paths.cache_dir={tmp_path / 'cache'}", *QUIET])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    run_dirs = [p for p in (logs / "train" / "runs").iterdir()]
    assert len(run_dirs) == 1, run_dirs  # the rank-1 process reused rank 0's run dir
    out = run_dirs[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert sum(map(sum, metrics["confusion_matrix"])) == 15  # every test image exactly once
    assert metrics["support"] == {"a": 5, "b": 5, "c": 5}
    assert (out / "predictions.csv").read_text().count("\n") == 15 + 1
    assert metrics["epochs_trained"] == 2
    # 48 train images - 10% val = 43/44 per epoch, batch 8 per rank x 2 ranks -> 3 optimizer steps per epoch
    assert metrics["global_step"] == 2 * 3
    log = (out / "train.log").read_text()
    # every rank builds a trainer, so an unquiet rank 1 would log the switch-off line twice
    assert log.count("artifacts written to") == 1 and log.count("trainer.sync_batchnorm switched off") == 1
    assert not list(out.glob("train_ddp_process_*"))  # children write no config/outputs of their own


def test_ddp_on_cpu_is_not_refused(make_cfg) -> None:
    """trainer=ddp on CPU used to be a ConfigError (SyncBatchNorm); now it runs with SyncBatchNorm off."""
    from lit_vision.training import distributed

    distributed.check_launch(make_cfg("trainer=ddp", "accelerator=cpu", *FAST))  # no ConfigError


def test_ddp_inside_local_multirun_is_refused(make_cfg, monkeypatch) -> None:
    from types import SimpleNamespace

    from hydra.types import RunMode

    from lit_vision.training import distributed

    cfg = make_cfg("trainer=ddp_cpu", "accelerator=cpu", *FAST)
    distributed.check_launch(cfg)  # a single run is fine
    monkeypatch.setattr(distributed.HydraConfig, "get", staticmethod(lambda: SimpleNamespace(mode=RunMode.MULTIRUN)))
    with pytest.raises(ConfigError, match="slurm_multigpu"):
        distributed.check_launch(cfg)


def test_fp16_on_cpu_is_a_config_error(make_cfg) -> None:
    cfg = make_cfg("trainer.precision=16-mixed", "accelerator=cpu", *FAST)
    with pytest.raises(ConfigError, match="bf16-mixed"):
        validate_config(cfg)


def test_bf16_mixed_on_cpu_trains(make_cfg) -> None:
    record = run(make_cfg("trainer.precision=bf16-mixed", "model=dense", *FAST))
    assert 0.0 <= record["test/acc"] <= 1.0


def test_deterministic_runs_are_identical(make_cfg, tmp_path: Path) -> None:
    args = ["trainer.deterministic=true", "model=dense", "accelerator=cpu", "trainer.max_epochs=1",
            "trainer.limit_train_batches=5", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2",
            "~callbacks.last_checkpoint", *QUIET]
    records = []
    for _ in range(2):  # through the runner, which seeds every command
        cfg = make_cfg(*args)
        execute(run, cfg)
        records.append(json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text()))
    assert records[0]["test/loss"] == records[1]["test/loss"] and records[0]["val/loss"] == records[1]["val/loss"]


@pytest.mark.slow
def test_torch_compile_on_cpu(make_cfg) -> None:
    pytest.importorskip("torch._inductor")
    record = run(make_cfg("model=dense", "model.compile=true", *FAST))
    assert 0.0 <= record["test/acc"] <= 1.0
    assert torch.isfinite(torch.tensor(record["test/loss"]))
