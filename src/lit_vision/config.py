"""Where the config tree lives, custom resolvers, and up-front validation of config values.

The config tree is ``conf/`` at the repository root; the package ships it as ``lit_vision/conf`` (a link in the
source tree, real files in a wheel), found through :mod:`importlib.resources` so an installed package works from
any directory. Validation runs before any data is loaded, so a typo costs a second, not a decoded dataset.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.checks import (
    fraction,
    fraction_list,
    positive_int,
    positive_int_or_auto,
)
from lit_vision.errors import ConfigError
from lit_vision.runs.paths import project_root

CONF_DIR = Path(str(files("lit_vision") / "conf"))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("resume_or"):  # hydra.run.dir: the resumed run's folder, else a new one
        OmegaConf.register_new_resolver("resume_or", lambda resume, default: str(resume) if resume else default)


register_resolvers()


def _check(cfg: DictConfig, key: str, check: Callable[[Any, str], Any]) -> None:
    """Run ``check`` on ``cfg[key]`` when the command's config has that key."""
    value = OmegaConf.select(cfg, key, default=None)
    if value is not None:
        check(value, key)


def validate_config(cfg: DictConfig) -> None:
    """Check the values users most often get wrong; raise :class:`ConfigError` naming key and fix."""
    for key, check in (("data.batch_size", positive_int), ("data.eval_batch_size", positive_int),
                       ("data.val_fraction", fraction), ("trainer.max_epochs", positive_int),
                       ("report.time_to", fraction_list), ("cpu_threads", positive_int_or_auto),
                       ("steps_per_execution", positive_int)):
        _check(cfg, key, check)
    if OmegaConf.select(cfg, "model.loss", default=None) is not None:  # commands that build a classifier
        from lit_vision.training.classifier import check_model_config

        check_model_config(OmegaConf.to_container(cfg.model, resolve=True))
    _check_steps_per_execution(cfg)
    _check_optional_packages(cfg)
    goal = OmegaConf.select(cfg, "report.operating_point", default=None)
    if goal:
        from lit_vision.deploy.operating_point import parse_goal

        parse_goal(goal)
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32"))
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if precision.startswith("16") and (accelerator == "cpu" or (accelerator == "auto" and not _cuda())):
        raise ConfigError(f"trainer.precision={precision} needs a CUDA GPU; on CPU use trainer.precision=bf16-mixed "
                          "(fast on CPUs with AMX/AVX-512-BF16) or trainer.precision=32")
    if accelerator in ("cuda", "gpu") and not _cuda():
        raise ConfigError("accelerator=cuda but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                          "use accelerator=cpu or accelerator=auto")


def _check_steps_per_execution(cfg: DictConfig) -> None:
    """``steps_per_execution > 1`` takes its optimizer steps itself (Lightning's manual optimisation): refuse the
    settings that Lightning would then no longer apply."""
    steps = int(OmegaConf.select(cfg, "steps_per_execution", default=1) or 1)
    if steps == 1:
        return
    fix = f"or use steps_per_execution=1 (now {steps})"
    if OmegaConf.select(cfg, "model.scheduler.name", default="none") == "plateau":
        raise ConfigError(f"model.scheduler.name=plateau steps on validation results, which steps_per_execution > 1 "
                          f"does not pass on; use a per-step scheduler (cosine, onecycle) or none, {fix}")
    if OmegaConf.select(cfg, "trainer.gradient_clip_val", default=None) is not None:
        raise ConfigError(f"trainer.gradient_clip_val is not applied with steps_per_execution > 1; remove it {fix}")
    if int(OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1) != 1:
        raise ConfigError(f"trainer.accumulate_grad_batches > 1 is not applied with steps_per_execution > 1; set it "
                          f"to 1 {fix}")
    for averaging in ("ema_decay", "lookahead"):
        if OmegaConf.select(cfg, f"model.{averaging}", default=None) is not None:
            raise ConfigError(f"model.{averaging} averages after every Lightning step, which steps_per_execution > 1 "
                              f"makes a group of steps; remove it {fix}")
    every = OmegaConf.select(cfg, "callbacks.last_checkpoint.every_n_train_steps", default=None)
    if every is not None and int(every) % steps:
        raise ConfigError(f"callbacks.last_checkpoint.every_n_train_steps={every} is not a multiple of "
                          f"steps_per_execution={steps}: checkpoints are only written between groups of steps; "
                          f"use a multiple of {steps}")


def _check_optional_packages(cfg: DictConfig) -> None:
    """Config choices that need an optional extra: say which before any data is read."""
    if not OmegaConf.select(cfg, "logger", default=None):
        return  # commands without loggers do not import Lightning for this
    from lit_vision.runs.tracking import mlflow_entries, require_mlflow

    if mlflow_entries(cfg):
        require_mlflow()


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

