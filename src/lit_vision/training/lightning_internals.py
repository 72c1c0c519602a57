"""The only place lit_vision reads Lightning's private attributes: each for something Lightning exposes no public
API for (checked against lightning 2.6). Should Lightning rename one, this module is what breaks, and the fix is
here. (Overriding a callback's protected methods — ``ModelCheckpoint._save_checkpoint``, ``CSVLogger``'s writer — is
subclassing, not reading state, and stays where it is.)"""

from __future__ import annotations

from typing import Any

import lightning as L


def logs_written_this_step(trainer: L.Trainer) -> bool:
    """Will the loggers write what this training step logs (every ``trainer.log_every_n_steps``)?

    Lightning decides from its private count of batches that stepped, which is neither ``global_step`` (it counts
    optimizer steps: several per batch with ``steps_per_execution``) nor the batch index (it survives resumes and
    skips accumulating batches). Logging on every step and letting Lightning drop the rest gives the same files but
    costs ~2 ms a step, as much as a whole step of the notebooks' dense nets (benchmarks/throughput.py)."""
    connector = getattr(trainer, "_logger_connector", None)
    return bool(getattr(connector, "should_update_logs", True))


def cluster_environment(trainer: L.Trainer) -> Any:
    """The trainer's cluster environment (SLURM, torchelastic, …): public only on multi-device strategies
    (``strategy.cluster_environment``), while a single-device run under SLURM has one too."""
    return trainer._accelerator_connector.cluster_environment


def hpc_save_path(trainer: L.Trainer) -> str:
    """Where Lightning's SLURM auto-requeue writes its checkpoint (``hpc_ckpt_<n>.ckpt``), and looks for one when
    ``ckpt_path`` is unset under ``SLURM_RESTART_COUNT``."""
    return trainer._checkpoint_connector.hpc_save_path(trainer.default_root_dir)


__all__ = ["cluster_environment", "hpc_save_path", "logs_written_this_step"]
