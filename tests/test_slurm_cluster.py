"""Cluster jobs against a real single-node SLURM (tests/system/slurm_cluster.sh): a sweep, a preemption, a time
limit, a requeued data=shards run, a 2-task DDP job and a failing job, each through ``-m hydra/launcher=slurm`` as
a user would submit them.

The cluster is started once per session and stopped at the end (the PIDs the script started). The tests skip,
with the reason, when the machine cannot run it (not root, no apt-get, or the start failed)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_shards_training import shard_dir  # noqa: F401  (the shards fixture of the requeue test)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tests" / "system" / "slurm_cluster.sh"
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]
STEPS_PER_EPOCH = 21  # digits: 1,293 training images in batches of 64

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment (SLURM_CONF) of a running single-node cluster."""
    if os.geteuid() != 0:
        pytest.skip("the SLURM cluster tests start munged/slurmdbd/slurmctld/slurmd and need root (CI runs as root)")
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "LIT_VISION_SLURM_DIR": str(state)}
    started = time.monotonic()
    res = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        pytest.skip(f"the SLURM cluster did not start: {res.stderr.strip()[-1500:]}")
    print(f"SLURM cluster started in {time.monotonic() - started:.0f}s")
    try:
        yield {**env, "SLURM_CONF": str(state / "slurm.conf"), "CUDA_VISIBLE_DEVICES": ""}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def sweep_cmd(sweep: Path, *args: str, launcher: str = "slurm") -> list[str]:
    return [sys.executable, "-m", "lit_vision.train", "-m", f"hydra/launcher={launcher}",
            "hydra.launcher.partition=cpu", "hydra.launcher.gpus_per_node=0", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={sweep}", f"paths.cache_dir={sweep.parent / 'cache'}",
            "model=dense", "accelerator=cpu", "cpu_threads=1", "report.plots=false", "data.eval_batch_size=1024",
            "callbacks.early_stopping.patience=100", *QUIET, *args]


def run_sweep(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def metrics(job_dir: Path) -> dict:
    return json.loads((job_dir / "metrics.json").read_text())


def squeue(env: dict[str, str], fmt: str) -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", fmt], env=env, capture_output=True, text=True, check=True).stdout
    return out.split()


def wait_until(check, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout}s"
        time.sleep(0.5)


def release_after_requeue(env: dict[str, str], job: str) -> None:
    """A requeued job waits behind a begin time (SLURM holds it ~2 minutes); start it now instead."""
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], env=env, capture_output=True)


def requeue_once(env: dict[str, str], run_dir: Path) -> str:
    """After the first epoch: USR1 to the one job, its requeue checkpoint, the requeue, and its restart now."""
    wait_until(lambda: (run_dir / "checkpoints" / "last.ckpt").exists(), "the first epoch's checkpoint")
    (job,) = squeue(env, "%i")
    subprocess.run(["scancel", "--signal=USR1", job], env=env, check=True)
    wait_until(lambda: (run_dir / "hpc_ckpt_1.ckpt").exists(), "the requeue checkpoint", timeout=60)
    wait_until(lambda: squeue(env, "%T") == ["PENDING"], "the requeue", timeout=60)
    release_after_requeue(env, job)
    return job


def test_a_two_job_sweep_runs_on_the_cluster(slurm: dict[str, str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    res = run_sweep(sweep_cmd(sweep, "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                              "model.optimizer.lr=0.001,0.003"), slurm)
    for job in ("0", "1"):
        record = metrics(sweep / job)
        assert record["epochs_trained"] == 1 and record["global_step"] == 4 and "test/acc" in record
    assert (sweep / "summary.csv").exists() and len((sweep / "summary.csv").read_text().splitlines()) == 3
    assert "Bypassing sacct error" not in res.stderr + res.stdout  # job accounting answers submitit's sacct
    jobs = [p.name for p in (sweep / ".submitit").iterdir() if p.is_dir()]

    def accounted_states() -> str:
        return subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,State", "-j", ",".join(jobs)], env=slurm,
                              capture_output=True, text=True, check=True).stdout

    # submitit returns once both results are pickled; slurmdbd records the end of a job a moment later.
    wait_until(lambda: accounted_states().count("COMPLETED") == 2, "both jobs COMPLETED in sacct", timeout=60)
    assert "FAILED" not in accounted_states()


def test_usr1_mid_epoch_checkpoints_requeues_and_finishes_exactly(slurm: dict[str, str], tmp_path: Path) -> None:
    sweep, epochs = tmp_path / "sweep", 12
    proc = subprocess.Popen(sweep_cmd(sweep, f"trainer.max_epochs={epochs}", "model.optimizer.lr=0.001"),
                            cwd=REPO, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = sweep / "0"
    job = requeue_once(slurm, run_dir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    record = metrics(run_dir)
    assert record["resumed_from"] == str((run_dir / "hpc_ckpt_1.ckpt").resolve())
    assert record["epochs_trained"] == epochs and record["global_step"] == epochs * STEPS_PER_EPOCH
    log = "".join(p.read_text() for p in (sweep / ".submitit" / job).glob(f"{job}_0_log.*"))
    assert "requeued job" in log and "not resumable" not in log, log[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()) == ["0"]


def test_a_time_limit_requeues_before_the_kill_and_the_job_still_finishes(slurm: dict[str, str],
                                                                          tmp_path: Path) -> None:
    # 1-minute slots with USR1 45 s before their end (SLURM checks limits every ~30 s, so the signal comes 15-45 s
    # into a slot); the training is longer than a slot even on a quiet machine (~60 s of epochs of 0.05 s), so it
    # is signalled, checkpoints and requeues, maybe more than once, and a later slot finishes it
    sweep, epochs = tmp_path / "sweep", 1200
    proc = subprocess.Popen(sweep_cmd(sweep, f"trainer.max_epochs={epochs}", "hydra.launcher.timeout_min=1",
                                      "hydra.launcher.additional_parameters.signal=USR1@45",
                                      "model.optimizer.lr=0.001", "~callbacks.early_stopping"),
                            cwd=REPO, env=slurm, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    run_dir = sweep / "0"
    deadline = time.monotonic() + 900
    while proc.poll() is None and time.monotonic() < deadline:
        for job in squeue(slurm, "%i"):  # a requeued job waits behind a begin time: start it now
            release_after_requeue(slurm, job)
        time.sleep(3)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-4000:]
    assert (run_dir / "hpc_ckpt_1.ckpt").exists(), "the job finished inside its first slot: make it longer"
    record = metrics(run_dir)
    assert record["resumed_from"].startswith(str(run_dir)) and "hpc_ckpt_" in record["resumed_from"]
    assert record["epochs_trained"] == epochs and record["global_step"] == epochs * STEPS_PER_EPOCH


def test_a_two_task_ddp_job_writes_one_run_dir_with_exact_test_counts(slurm: dict[str, str],
                                                                      tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_sweep(sweep_cmd(sweep, "trainer=ddp", "trainer.devices=2", "trainer.max_epochs=1",
                        "trainer.limit_train_batches=4", "model.optimizer.lr=0.001", launcher="slurm_multigpu"),
              slurm)
    record = metrics(sweep / "0")
    assert record["world_size"] == 2 and record["epochs_trained"] == 1
    test_images = sum(record["data"]["counts"]["test"].values())
    rows = (sweep / "0" / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == test_images  # each test image once: no DistributedSampler padding
    assert sorted(p.name for p in sweep.iterdir() if not p.name.startswith(".") and p.is_dir()) == ["0"]


def test_a_failing_job_is_recorded_and_the_others_finish(slurm: dict[str, str], tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    run_sweep(sweep_cmd(sweep, "trainer.max_epochs=1", "trainer.limit_train_batches=4",
                        "model.optimizer.lr=0.001,-1"), slurm)
    assert metrics(sweep / "0")["epochs_trained"] == 1
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert "model.optimizer.lr" in error["message"]
    summary = (sweep / "summary.md").read_text()
    assert "failed" in summary.lower() and "model.optimizer.lr" in error["message"]


def test_a_study_shared_by_two_slurm_workers_on_mariadb_runs_each_trial_once(slurm: dict[str, str],
                                                                          tmp_path: Path) -> None:
    """``tune.workers=2 hydra/launcher=slurm``: two SLURM jobs share one study in the cluster's MariaDB; both run
    trials, every trial runs once, and a trial that fails (a NaN loss) is recorded with its error while the search
    goes on."""
    import optuna

    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "cluster.yaml").write_text(
        "# @package _global_\ntune:\n  study: cluster_" + tmp_path.name.replace("-", "_") + "\n  space:\n"
        "    model.optimizer.lr: {type: categorical, choices: [0.001, 0.003, 1.0e+30]}\n")
    storage = f"mysql+pymysql://optuna:optuna@127.0.0.1:{os.environ.get('LIT_VISION_SLURM_DB_PORT', '3307')}/optuna"
    cmd = [sys.executable, "-m", "lit_vision.tune", "hparams_search=cluster", f"hydra.searchpath=[file://{tmp_path}/conf]",
           "tune.workers=2", "tune.n_trials=6", "tune.sampler=random", "tune.pruner=none", f"tune.storage={storage}",
           "hydra/launcher=slurm", "hydra.launcher.partition=cpu", "hydra.launcher.gpus_per_node=0",
           "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", f"paths.log_dir={tmp_path / 'outputs'}",
           f"paths.cache_dir={tmp_path / 'cache'}", "model=dense", "trainer.max_epochs=2", "report.plots=false",
           "accelerator=cpu", "cpu_threads=1", "~callbacks.progress_bar", "~callbacks.model_summary"]
    res = subprocess.run(cmd, cwd=REPO, env=slurm, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    study = optuna.load_study(study_name="cluster_" + tmp_path.name.replace("-", "_"), storage=storage)
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(len(trials))) and 6 <= len(trials) <= 7
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both SLURM jobs ran trials
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL}
    for t in trials:  # a diverging lr fails its trial, with the training's error; the others complete
        failed = t.params["model.optimizer.lr"] > 1
        assert (t.state == optuna.trial.TrialState.FAIL) == failed, (t.params, t.state, t.user_attrs)
        if failed:
            assert "loss became" in t.user_attrs["error"]
    tune_dir = tmp_path / "outputs" / "tune" / study.study_name
    assert "complete" in (tune_dir / "summary.md").read_text()


def test_a_shards_run_requeued_mid_epoch_equals_the_uninterrupted_run(slurm: dict[str, str], tmp_path: Path,
                                                                      shard_dir: Path) -> None:  # noqa: F811
    """data=shards with DataLoader workers and OneCycle, requeued by SLURM mid-training: its history.csv equals the
    same run's trained in one go outside SLURM (the loader's position and the crops survive the requeue)."""
    from test_exact_resume import history_without_times

    epochs = 12
    same = ["data=shards", f"data.root={shard_dir}", "data.image_size=16", "data.batch_size=8", "data.num_workers=1",
            f"trainer.max_epochs={epochs}", "model.optimizer.lr=0.001", "model.scheduler.name=onecycle"]
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen(sweep_cmd(sweep, *same), cwd=REPO, env=slurm, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    run_dir = sweep / "0"
    requeue_once(slurm, run_dir)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-4000:]
    assert "hpc_ckpt_1" in metrics(run_dir)["resumed_from"]

    python, module, train, *args = sweep_cmd(sweep, *same)  # the same run, without the multirun and its launcher
    local = [python, module, train, *(a for a in args if a != "-m" and not a.startswith(
        ("hydra/launcher=", "hydra.launcher.", "hydra.sweep.dir=")))]
    whole = tmp_path / "whole"
    env = {k: v for k, v in slurm.items() if not k.startswith("SLURM")}
    res = subprocess.run([*local, f"hydra.run.dir={whole}"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    history = history_without_times(whole)
    assert history_without_times(run_dir) == history and len(history) == epochs
