"""``python -m lit_vision.tune hparams_search=<space> …``: an Optuna search, every trial a training run.

Examples::

    python -m lit_vision.tune hparams_search=cnn_optuna tune.n_trials=10                  # offline, digits
    python -m lit_vision.tune experiment=fashion_cnn_final hparams_search=fashion_optuna tune.n_trials=40 \\
        tune.workers=2 tune.storage=sqlite:///outputs/optuna.db tune.study=fashion_lr data.root=../shared/datasets
    python -m lit_vision.tune hparams_search=cnn_optuna tune.report_only=true            # the summary again
    python -m lit_vision.tune hparams_search=cnn_optuna tune.workers=4 hydra/launcher=slurm \
        hydra.launcher.partition=gpu tune.storage=postgresql://user:pw@dbhost/optuna    # 4 SLURM worker jobs

Every override that is not ``tune.*`` / ``hparams_search`` goes to each trial's training run unchanged. Rerunning
the same command continues the study up to ``tune.n_trials``; the summary (``summary.md``, ``trials.csv``,
``plots/``) is rewritten at the end. ``optuna-dashboard <storage URL>`` shows the same study live.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lit_vision.commands.runner import hydra_command
from lit_vision.config import validate_config
from lit_vision.errors import ConfigError
from lit_vision.tuning.cluster import check_cluster_storage, submit_workers, wait_for
from lit_vision.tuning.report import write_report
from lit_vision.tuning.space import SearchSpace
from lit_vision.tuning.study import TrialRunner, TuneSettings, open_study, run_study

log = logging.getLogger("lit_vision.tune")

#: command-line overrides that configure the search itself, not the trials' training
OWN_OVERRIDES = ("tune.", "+tune.", "hparams_search", "trial", "hydra.", "hydra/")


def settings_of(cfg: DictConfig) -> tuple[TuneSettings, SearchSpace]:
    tune = OmegaConf.to_container(cfg.tune, resolve=True)
    settings = TuneSettings.from_config(tune, Path(cfg.paths.output_dir), str(cfg.optimized_metric), int(cfg.seed))
    return settings, SearchSpace.parse(tune.get("space"))


def check_options(cfg: DictConfig) -> None:
    """``tune.*`` and the search space, before any trial: every tuned key is a key of the training config, and the
    training config with each key at its extremes (every choice) passes the training's own checks."""
    settings, space = settings_of(cfg)
    if slurm_launcher() is not None:
        check_cluster_storage(settings.storage)
    if cfg.get("trial") is not None:
        raise ConfigError("trial= is set by lit_vision.tune for its trials; leave it out")
    for param in space.params:
        if OmegaConf.select(cfg, param.key, default="<absent>") == "<absent>" or param.key.startswith(("tune.",
                                                                                                        "hydra.")):
            raise ConfigError(f"tune.space.{param.key}: {param.key} is not a key of the training config (check the "
                              "spelling against python -m lit_vision.train --cfg job, or add the key to the preset)")
    for corner in space.corners():
        trial_cfg = cfg.copy()
        for key, value in corner.items():
            OmegaConf.update(trial_cfg, key, value, merge=False)
        validate_config(trial_cfg)


def train_overrides() -> list[str]:
    """The command line's overrides that go on to every trial."""
    if not HydraConfig.initialized():
        return []
    return [o for o in HydraConfig.get().overrides.task if not o.lstrip("~+").startswith(OWN_OVERRIDES)]


def trial_threads(cfg: DictConfig, workers: int, overrides: list[str]) -> int | None:
    """Cores split between the workers' trials, unless the command line sets ``cpu_threads`` itself."""
    if workers == 1 or any(o.startswith("cpu_threads=") for o in overrides):
        return None
    return max(1, (os.cpu_count() or 1) // workers)


def slurm_launcher() -> dict[str, Any] | None:
    """The SLURM launcher's settings when the command line picks ``hydra/launcher=slurm`` (else None)."""
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if "slurm" not in str(hydra_cfg.runtime.choices.get("hydra/launcher", "")):
        return None
    return OmegaConf.to_container(hydra_cfg.launcher, resolve=True)


def run(cfg: DictConfig) -> dict[str, Any]:
    tune_dir = Path(cfg.paths.output_dir)
    settings, space = settings_of(cfg)
    launcher = slurm_launcher()
    if cfg.tune.report_only:
        study = open_study(settings, space, create=False)
    else:
        study = open_study(settings, space)
        overrides = train_overrides()
        if launcher is None:  # local workers: processes of this machine, its cores split between them
            run_study(study, TrialRunner(settings, space, tune_dir, overrides,
                                         trial_threads(cfg, settings.workers, overrides)))
        else:  # SLURM workers: each job one trial at a time on its own cores
            wait_for(submit_workers(TrialRunner(settings, space, tune_dir, overrides, None), launcher,
                                    settings.workers))
    summary = write_report(study, tune_dir, settings.metric, plots=bool(cfg.report.plots))
    log.info("study %s (%s): summary in %s", settings.study, settings.storage, summary)
    try:
        best = study.best_trial
    except ValueError:
        return {"study": settings.study, "trials": len(study.trials)}
    log.info("best: trial %d, %s = %.4f, %s", best.number, settings.metric, best.value, best.params)
    return {"study": settings.study, "trials": len(study.trials), settings.metric: best.value,
            "best_trial": best.number, "best_params": best.params}


main = hydra_command("tune", run, check_options)

if __name__ == "__main__":
    main()
