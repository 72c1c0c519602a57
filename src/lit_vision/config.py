"""Where the config tree lives, custom resolvers, and up-front validation of config values.

The config tree is ``conf/`` at the repository root; the package ships it as ``lit_vision/conf`` (a link in the
source tree, real files in a wheel), found through :mod:`importlib.resources` so an installed package works from
any directory. Validation runs before any data is loaded, so a typo costs a second, not a decoded dataset.
"""

from __future__ import annotations

import math
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.errors import ConfigError

from lit_vision.runs import project_root

CONF_DIR = Path(str(files("lit_vision") / "conf"))


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("project_root"):
        OmegaConf.register_new_resolver("project_root", lambda: str(project_root()))
    if not OmegaConf.has_resolver("resume_or"):  # hydra.run.dir: the resumed run's folder, else a new one
        OmegaConf.register_new_resolver("resume_or", lambda resume, default: str(resume) if resume else default)


register_resolvers()


def _get(cfg: DictConfig, key: str, default: Any = None) -> Any:
    value = OmegaConf.select(cfg, key, default=default)
    return value


def _positive_number(cfg: DictConfig, key: str) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{key}={value!r} must be a positive number; set it with {key}=<value>")


def _positive_int(cfg: DictConfig, key: str) -> None:
    value = _get(cfg, key)
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key}={value!r} must be an integer >= 1; set it with {key}=<value>")


def validate_config(cfg: DictConfig) -> None:
    """Check the values users most often get wrong; raise :class:`ConfigError` naming key and fix."""
    _positive_number(cfg, "model.optimizer.lr")
    _positive_int(cfg, "data.batch_size")
    _positive_int(cfg, "trainer.max_epochs")
    vf = _get(cfg, "data.val_fraction")
    if vf is not None and (not isinstance(vf, (int, float)) or not 0.0 < float(vf) < 1.0):
        raise ConfigError(f"data.val_fraction={vf!r} must be strictly between 0 and 1 (e.g. data.val_fraction=0.1)")
    wd = _get(cfg, "model.optimizer.weight_decay", 0.0) or 0.0
    if wd < 0:
        raise ConfigError(f"model.optimizer.weight_decay={wd} must be >= 0")
    precision = str(_get(cfg, "trainer.precision", "32"))
    accelerator = str(_get(cfg, "trainer.accelerator", "auto"))
    if precision.startswith("16") and (accelerator == "cpu" or (accelerator == "auto" and not _cuda())):
        raise ConfigError(f"trainer.precision={precision} needs a CUDA GPU; on CPU use trainer.precision=bf16-mixed "
                          "(fast on CPUs with AMX/AVX-512-BF16) or trainer.precision=32")
    if accelerator in ("cuda", "gpu") and not _cuda():
        raise ConfigError("accelerator=cuda but no CUDA GPU is visible (torch.cuda.is_available() is False); "
                          "use accelerator=cpu or accelerator=auto")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()

