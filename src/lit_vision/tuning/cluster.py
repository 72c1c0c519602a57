"""``tune.workers=N`` with ``hydra/launcher=slurm``: N SLURM jobs, each a worker that runs trials of the same study
one at a time until the study holds ``tune.n_trials``. The jobs are submitted with the SLURM launcher's settings
(``hydra.launcher.partition``, ``cpus_per_task``, ``timeout_min`` …) through submitit, as Hydra's submitit launcher
does; the study must live where every node reaches it: a database server (``tune.storage=mysql+pymysql://…`` or
``postgresql://…``). The tune process waits for the jobs, then writes the summary."""

from __future__ import annotations

import logging
import os
from typing import Any

from omegaconf import OmegaConf

from lit_vision.errors import ConfigError
from lit_vision.tuning.study import TrialRunner, finished_trials, open_study, run_study

log = logging.getLogger(__name__)

#: launcher keys submitit takes when the executor is made, not as job parameters
INIT_KEYS = ("max_num_timeout",)


def check_cluster_storage(storage: str) -> None:
    if storage.startswith("sqlite"):
        raise ConfigError(f"tune.storage={storage}: SLURM workers on several nodes need a database server they all "
                          "reach (SQLite's file locks do not work across nodes); set tune.storage=mysql+pymysql://"
                          "user:password@host/db or postgresql://…")


def run_worker(runner: TrialRunner) -> int:
    """One SLURM job's work: trials of the study, one at a time, until it is full; returns the finished trials."""
    runner.worker = os.environ.get("SLURM_JOB_ID", "")
    study = open_study(runner.settings, runner.space)
    run_study(study, runner, n_jobs=1)
    return finished_trials(study)


def submit_workers(runner: TrialRunner, launcher: dict[str, Any], count: int) -> list[Any]:
    """Submit ``count`` worker jobs (one array) with the SLURM launcher's settings."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    params = {k: v for k, v in launcher.items() if k not in ("_target_", "submitit_folder")}
    init = {k: params.pop(k) for k in INIT_KEYS if k in params}
    executor = submitit.AutoExecutor(folder=str(runner.tune_dir / ".submitit" / "%j"), cluster="slurm", **init)
    queue_keys = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in queue_keys else f"slurm_{k}": v for k, v in params.items()})
    executor.update_parameters(name=f"tune-{runner.settings.study}")
    with executor.batch():
        jobs = [executor.submit(run_worker, runner) for _ in range(count)]
    log.info("submitted %d SLURM worker job(s) for study %s: %s", count, runner.settings.study,
             ", ".join(job.job_id for job in jobs))
    return jobs


def wait_for(jobs: list[Any]) -> None:
    """Wait for every worker job; a failed one is logged (the study and the other workers go on)."""
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 - a worker's failure must not lose the others' results
            log.error("SLURM worker job %s failed: %s", job.job_id, str(exc).strip().splitlines()[-1][:500])


__all__ = ["check_cluster_storage", "submit_workers", "wait_for"]
