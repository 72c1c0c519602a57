"""What every Hydra entry point does with a user's mistake: one message, no traceback wall, an exit code."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Mapping

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from lit_vision.errors import ConfigError, LitVisionError

log = logging.getLogger("lit_vision")


def exit_on_user_error(exc: BaseException) -> None:
    """In a single run, log a :class:`LitVisionError`'s message (it names the culprit and the fix) and exit
    with 2 for config errors, 1 for the rest. Anything else, or inside a multirun, is left to the caller."""
    single_run = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.RUN
    if isinstance(exc, LitVisionError) and single_run:
        log.error("%s", exc)
        sys.exit(2 if isinstance(exc, ConfigError) else 1)


def run_entry_point(run: Callable[[DictConfig], Mapping[str, Any] | None], cfg: DictConfig) -> float | None:
    """Run ``run(cfg)``; return ``cfg.optimized_metric`` from its record (what sweepers optimise)."""
    try:
        record = run(cfg) or {}
    except Exception as exc:
        exit_on_user_error(exc)
        raise
    return record.get(cfg.get("optimized_metric") or "", None)
