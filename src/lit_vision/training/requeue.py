"""SLURM's requeue signal handled at the next batch boundary, so the requeue checkpoint is exact.

Lightning's own handler (SLURMEnvironment's auto-requeue) saves ``hpc_ckpt_<n>.ckpt`` inside the signal handler,
wherever the Python code happens to be: in the middle of a batch, after the optimizer step but before the loop
counted it, or while the loader's position says one batch more than was trained. Resuming from such a file
repeats or skips a batch. This callback installs its own handler for the same signal (Lightning then installs
none: it never replaces a handler that is already there), which only records the request; at the end of the
current training batch every rank saves the checkpoint, rank 0 runs ``scontrol requeue`` and the
process exits: SLURM starts the job again later, and ``ckpt_path`` (auto under ``SLURM_RESTART_COUNT``) resumes
from that file. Under DDP the ranks agree on the step to stop at with one all-reduce per step.
Outside SLURM (or with auto-requeue off) it does nothing.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import Callback

from lit_vision.training.checkpoints import next_hpc_checkpoint

log = logging.getLogger(__name__)

#: the signal SLURM sends before a time limit or preemption (``--signal=USR1@<s>``), as Lightning's SLURMEnvironment
REQUEUE_SIGNAL = signal.SIGUSR1


class Requeued(SystemExit):
    """Raised after a successful ``scontrol requeue``: the job leaves without results; its next run resumes."""


def slurm_job_id() -> str:
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    job = f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}" if array_job else os.environ["SLURM_JOB_ID"]
    if not re.fullmatch(r"[0-9_]+", job):
        raise RuntimeError(f"unexpected SLURM job id {job!r}")
    return job


class DeferredRequeue(Callback):
    """See the module docstring."""

    def __init__(self) -> None:
        self.requested = False
        self._signum: int | None = None
        self._previous: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not SLURMEnvironment.detect():
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self._signum = int(REQUEUE_SIGNAL)
        self._previous = signal.signal(self._signum, self._on_signal)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._signum is not None:
            signal.signal(self._signum, self._previous if self._previous is not None else signal.SIG_DFL)
            self._signum = None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True  # nothing else here: the checkpoint waits for the batch boundary

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self._signum is None or batch_idx + 1 >= trainer.num_training_batches:
            return  # on an epoch's last batch, the request waits for the next one (module docstring)
        requested = self.requested
        if trainer.world_size > 1:  # any rank's signal counts, so all stop at the same step
            requested = trainer.strategy.reduce_boolean_decision(requested, all=False)
        if requested:
            self.requested = False
            self._save_and_requeue(trainer)

    def _save_and_requeue(self, trainer: L.Trainer) -> None:
        path = str(next_hpc_checkpoint(trainer.default_root_dir))
        partial = f"{path}.partial"  # renamed when complete: a kill while saving leaves no truncated checkpoint
        trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes
        requeued = False
        if trainer.is_global_zero:
            os.replace(partial, path)
            job = slurm_job_id()
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, check=False)
            requeued = result.returncode == 0
            if requeued:
                log.info("SLURM requeue signal: saved %s at global step %d and requeued job %s; it resumes from "
                         "there when it runs again", path, trainer.global_step, job)
            else:
                log.warning("SLURM requeue signal: saved %s, but scontrol requeue %s failed (exit %d: %s); "
                            "training goes on", path, job, result.returncode, result.stderr.strip())
        if trainer.world_size > 1:
            requeued = bool(trainer.strategy.broadcast(requeued, src=0))
        if requeued:
            # SLURM now ends the job step with SIGTERM: leave with exit code 0 whatever its timing. A step killed
            # mid-exit ("task 0: Terminated") has made submitit read the job as FAILED and give up on it.
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            for logger in trainer.loggers:
                logger.finalize("requeued")
            raise Requeued(0)


__all__ = ["DeferredRequeue", "Requeued"]
