"""Multi-process runs: quiet non-zero ranks, fit DDP to CPUs, refuse launch modes that break, evaluate once on rank 0.

On CPU processes DDP uses the gloo backend (Lightning's default for the CPU) and ``trainer.sync_batchnorm`` is
switched off, since torch's SyncBatchNorm has no CPU kernel: ``trainer=ddp accelerator=cpu`` just works.

DDP's samplers pad the last batch with repeated samples so every rank gets the same number, which would
count some test images twice in the confusion matrix. So lit_vision fits with DDP, then tears the process
group down and runs the final validate/test on global rank 0 alone, with a single-device trainer.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.fabric.plugins.environments import LightningEnvironment
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lit_vision.errors import ConfigError
from lit_vision.training import hardware

log = logging.getLogger(__name__)


def global_rank() -> int:
    """This process's rank as Lightning sees it (``RANK``/``LOCAL_RANK``/``SLURM_PROCID``), before any Trainer."""
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def quiet_non_zero_ranks() -> None:
    """Only rank 0 writes lit_vision's INFO lines (all ranks share the run dir's log file)."""
    if global_rank() != 0:
        logging.getLogger("lit_vision").setLevel(logging.WARNING)


def _multi_device(cfg: DictConfig) -> bool:
    devices = cfg.trainer.get("devices", 1)
    nodes = int(cfg.trainer.get("num_nodes", 1) or 1)
    many = devices in ("auto", -1, "-1") or (isinstance(devices, int) and devices > 1) or \
        (not isinstance(devices, (int, str)) and len(devices) > 1) or nodes > 1
    return bool(many)


def _externally_launched() -> bool:
    """SLURM (srun tasks) or torchrun start every rank themselves; Lightning then spawns nothing."""
    return "SLURM_NTASKS" in os.environ or "TORCHELASTIC_RUN_ID" in os.environ


def on_cpu(cfg: DictConfig) -> bool:
    """Does the trainer run on CPU processes (``accelerator=cpu``, or ``auto`` without a CUDA device)?"""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def device_overrides(cfg: DictConfig, announce: bool = True) -> dict[str, Any]:
    """Trainer arguments that make ``cfg.trainer`` work on its devices: the precision ``auto`` resolves to, cuDNN
    autotuning on CUDA, thread counts (:mod:`~lit_vision.training.hardware`) and, on CPU, no SyncBatchNorm."""
    args = hardware.configure(cfg, on_cuda=not on_cpu(cfg), announce=announce)
    if cfg.trainer.get("sync_batchnorm", False) and on_cpu(cfg):
        if announce:
            log.info("trainer.sync_batchnorm switched off: DDP on CPU runs on gloo, and torch's SyncBatchNorm has no "
                     "CPU kernel (each process normalises with its own batch statistics)")
        args["sync_batchnorm"] = False
    phases = OmegaConf.select(cfg, "model.net.freeze_epochs", default=0)
    if phases and cfg.trainer.get("strategy") == "ddp":
        # the backbone's parameters get no gradient while it is frozen: DDP's reducer must be told to expect that
        if announce:
            log.info("trainer.strategy=ddp_find_unused_parameters_true: model.net.freeze_epochs=%s leaves the "
                     "backbone without gradients in its first epochs", phases)
        args["strategy"] = "ddp_find_unused_parameters_true"
    return args


def check_launch(cfg: DictConfig) -> None:
    """Refuse DDP set-ups that cannot work: subprocess DDP inside a local multirun."""
    # DDP inside a local Hydra multirun would re-run the whole sweep in every child process
    if not _multi_device(cfg) or _externally_launched() or not HydraConfig.initialized():
        return
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        raise ConfigError(
            "trainer.devices>1 inside a local multirun (-m): Lightning would re-launch the whole sweep in every "
            "DDP process. Run one configuration per command, or sweep on SLURM with "
            "hydra/launcher=slurm_multigpu (SLURM starts one task per device, see docs/cluster.md).")


def evaluation_trainer(cfg: DictConfig, fit_trainer: L.Trainer) -> L.Trainer | None:
    """The trainer of the final validation and test with the best checkpoint. After a multi-process fit: end the
    process group; rank 0 gets a 1-device trainer, other ranks ``None``. After a one-process fit: the fit trainer
    without its weight-averaging callbacks (EMA): best.ckpt holds the averaged weights as its ``state_dict``, which
    is what evaluate, export and serve load; with the callback attached, Lightning would load the raw weights
    (``current_model_state``) for the test and swap the average in for validation only."""
    if fit_trainer.world_size <= 1:
        fit_trainer.callbacks = [cb for cb in fit_trainer.callbacks if not isinstance(cb, WeightAveraging)]
        return fit_trainer
    is_zero = fit_trainer.is_global_zero
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if not is_zero:
        return None
    log.info("final validation/test on rank 0 only (each test image counted exactly once)")
    overrides: dict[str, Any] = dict(devices=1, num_nodes=1, strategy="auto", callbacks=[], logger=False,
                                     plugins=[LightningEnvironment()])
    if "sync_batchnorm" in cfg.trainer:
        overrides["sync_batchnorm"] = False
    return instantiate(cfg.trainer, **{**device_overrides(cfg, announce=False), **overrides})
