"""Cluster jobs: the SLURM launcher presets are valid submitit jobs, and a real 2-job sweep runs through
submitit's local launcher; re-running a job's pickled submission (what a SLURM requeue does) lands in the same
run dir and resumes from its checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import compose_config
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]


def sbatch_text(launcher_cfg, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The sbatch script hydra-submitit-launcher would submit for this config (mirrors its launch())."""
    import submitit

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # no srun here
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = OmegaConf.to_container(launcher_cfg, resolve=True)
    params.pop("_target_")
    params.pop("submitit_folder")
    executor = submitit.AutoExecutor(cluster="slurm", folder=folder,
                                     slurm_max_num_timeout=params.pop("max_num_timeout"))
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v for k, v in params.items()})
    executor = executor._executor
    return executor._make_submission_file_text("python -m submitit.core._submit x", "uid")


@pytest.mark.parametrize("launcher,extra,tasks", [("slurm", [], 1),
                                                  ("slurm_multigpu", ["trainer=ddp", "trainer.devices=4"], 4)])
def test_slurm_presets_make_valid_sbatch_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, launcher: str,
                                                 extra: list[str], tasks: int) -> None:
    cfg = compose_config([f"hydra/launcher={launcher}", "hydra.launcher.partition=gpu", *extra], tmp_path / "run")
    text = sbatch_text(cfg.hydra.launcher, tmp_path, monkeypatch)
    assert "#SBATCH --partition=gpu" in text
    assert f"#SBATCH --ntasks-per-node={tasks}" in text and f"#SBATCH --gpus-per-node={tasks}" in text
    assert "#SBATCH --signal=USR1@120" in text and "USR2" not in text  # Lightning's requeue signal
    assert "#SBATCH --requeue" in text
    # the sweep subdir is the job number: no timestamp that would change when the job is requeued
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${hydra.job.num}"


@pytest.mark.slow
def test_submitit_local_sweep_then_requeue_resumes_in_same_dir(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    args = [sys.executable, "-m", "lit_vision.train", "-m", "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}",
            "model=dense", "accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=4",
            "trainer.limit_val_batches=2", "validate_best=false", "data.eval_batch_size=1024",
            "model.optimizer.lr=0.001,0.003", *QUIET]
    res = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lrs = {}
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["epochs_trained"] == 1 and metrics["global_step"] == 4 and "test/acc" in metrics
        assert (sweep / job / "checkpoints" / "last.ckpt").exists()
        overrides = yaml.safe_load((sweep / job / ".hydra" / "overrides.yaml").read_text())
        lrs[job] = [o for o in overrides if o.startswith("model.optimizer.lr=")]
    assert lrs == {"0": ["model.optimizer.lr=0.001"], "1": ["model.optimizer.lr=0.003"]}

    # A SLURM requeue re-runs the job's pickled submission, later, with SLURM_RESTART_COUNT set: it must write
    # into the same sweep dir/subdir and continue from that dir's last.ckpt instead of starting over.
    pickles = sorted(sweep.glob(".submitit/*/*_submitted.pkl"))
    assert len(pickles) == 2
    (sweep / "0" / "metrics.json").unlink()
    code = (
        "import sys, submitit\n"
        "from submitit.core.utils import DelayedSubmission\n"
        "for p in sys.argv[1:]:\n"
        "    d = DelayedSubmission.load(p)\n"
        "    if d.args[2] == 0:\n"
        "        d.result()\n"
    )
    requeue_env = {**env, "SLURM_RESTART_COUNT": "1", "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "1",
                   "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0",
                   "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1"}
    again = subprocess.run([sys.executable, "-c", code, *map(str, pickles)], cwd=REPO, env=requeue_env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    metrics = json.loads((sweep / "0" / "metrics.json").read_text())
    assert metrics["resumed_from"] == str((sweep / "0" / "checkpoints" / "last.ckpt").resolve())
    assert metrics["global_step"] == 4  # nothing retrained: the epoch was already done
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith(".")) == ["0", "1"]
