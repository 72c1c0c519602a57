"""The study and its trials: storage, sampler and pruner from ``tune.*``, and the objective that runs one trial
as its own ``python -m lit_vision.train`` process in ``<tune dir>/trials/<number>/``.

A trial as a process: its run dir, ``metrics.json`` and console log are exactly a training run's, a crash or a
kill takes only that trial down, and its memory is returned when it ends. The tune process keeps the study's
heartbeat: a worker killed mid-trial leaves that trial RUNNING until the heartbeat is stale, then the next worker
to start a trial marks it FAIL (Optuna's ``fail_stale_trials``)."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from lit_vision.checks import folder_name, int_at_least, non_negative_int, one_of, positive_int
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.records import RunDir
from lit_vision.tuning.pruning import PRUNERS, make_pruner
from lit_vision.tuning.space import SearchSpace

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random")
DIRECTIONS = ("maximize", "minimize")
#: the study name error messages suggest
STUDY_EXAMPLE = "fashion_lr"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
TAKEN = (*FINISHED, TrialState.RUNNING)
SPACE_ATTR = "lit_vision_space"


class StorageError(LitVisionError):
    """The study's storage cannot be reached or opened."""


class TrialFailed(LitVisionError):
    """A trial's training process failed; its error is recorded on the trial and the search goes on."""


@dataclass(frozen=True)
class TuneSettings:
    """``tune.*``, checked."""

    study: str
    storage: str
    n_trials: int
    workers: int
    pruner: str
    sampler: str
    direction: str
    startup_trials: int
    warmup_epochs: int
    stale_after_s: int
    seed: int
    metric: str

    @classmethod
    def from_config(cls, tune: Mapping[str, Any], tune_dir: Path, metric: str, seed: int) -> TuneSettings:
        study = folder_name(tune.get("study"), "tune.study", STUDY_EXAMPLE)
        storage = tune.get("storage") or f"sqlite:///{tune_dir / 'optuna.db'}"
        return cls(study=study, storage=str(storage), n_trials=positive_int(tune.get("n_trials"), "tune.n_trials"),
                   workers=positive_int(tune.get("workers"), "tune.workers"),
                   pruner=one_of(tune.get("pruner"), "tune.pruner", PRUNERS),
                   sampler=one_of(tune.get("sampler"), "tune.sampler", SAMPLERS),
                   direction=one_of(tune.get("direction"), "tune.direction", DIRECTIONS),
                   startup_trials=non_negative_int(tune.get("startup_trials"), "tune.startup_trials"),
                   warmup_epochs=non_negative_int(tune.get("warmup_epochs"), "tune.warmup_epochs"),
                   stale_after_s=int_at_least(tune.get("stale_after_s"), "tune.stale_after_s", 4),
                   seed=seed, metric=metric)

    def make_pruner(self) -> optuna.pruners.BasePruner:
        return make_pruner(self.pruner, self.startup_trials, self.warmup_epochs)

    def make_sampler(self) -> optuna.samplers.BaseSampler:
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=self.seed)
        return optuna.samplers.TPESampler(seed=self.seed, n_startup_trials=max(1, self.startup_trials))


def open_storage(url: str, stale_after_s: int = 120) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats (a running trial's every ``stale_after_s / 4`` s; a trial without one for
    ``stale_after_s`` is failed by the next worker to start a trial); an unreachable URL is one line naming it
    (exit 1), not a hang."""
    engine_kwargs: dict[str, Any] = {}
    if not url.startswith("sqlite"):
        engine_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    else:
        path = url.split(":///", 1)[-1]
        if path and not Path(path).parent.is_dir():
            raise StorageError(f"tune.storage={url}: the folder {Path(path).parent} does not exist; create it or "
                               "point at another file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats: stable since 2.9
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=max(1, stale_after_s // 4), grace_period=stale_after_s)
    except Exception as exc:  # SQLAlchemy: driver missing, server down, bad credentials, bad URL
        raise StorageError(f"tune.storage={url} cannot be opened ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:300]}); check the URL, that the server runs and that its "
                           "driver is installed (e.g. pip install pymysql for mysql+pymysql://)") from exc


def open_study(settings: TuneSettings, space: SearchSpace, create: bool = True) -> optuna.Study:
    """The named study in the storage, created on first use; refused when it was made with another direction or
    search space (its trials would not be comparable)."""
    storage = open_storage(settings.storage, settings.stale_after_s)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # lit_vision logs each trial itself
    try:
        study = optuna.create_study(study_name=settings.study, storage=storage, load_if_exists=create,
                                    direction=settings.direction, sampler=settings.make_sampler(),
                                    pruner=settings.make_pruner()) if create else \
            optuna.load_study(study_name=settings.study, storage=storage, sampler=settings.make_sampler(),
                              pruner=settings.make_pruner())
    except KeyError as exc:
        raise StorageError(f"tune.study={settings.study} is not in {settings.storage}; run the search first "
                           "(without tune.report_only)") from exc
    if study.direction.name.lower() != settings.direction:
        raise ConfigError(f"tune.study={settings.study} in {settings.storage} was created to "
                          f"{study.direction.name.lower()}, this search asks to {settings.direction}: use another "
                          "tune.study or the study's direction")
    described = space.describe()
    stored = study.user_attrs.get(SPACE_ATTR)
    if stored is None and create:
        study.set_user_attr(SPACE_ATTR, described)
    elif stored is not None and stored != described:
        changed = sorted(k for k in set(stored) | set(described) if stored.get(k) != described.get(k))
        raise ConfigError(f"tune.study={settings.study} in {settings.storage} was created with another search space "
                          f"(different: {changed}); use another tune.study for the new space")
    return study


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def taken_trials(study: optuna.Study) -> int:
    """Finished trials and the ones running now (in this or another worker); a trial whose worker was killed is
    failed first, once its heartbeat is stale."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # stable since Optuna 2.9
        optuna.storages.fail_stale_trials(study)
    return len(study.get_trials(deepcopy=False, states=TAKEN))


def override_value(value: Any) -> str:
    """A value as a Hydra command-line override."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    text = str(value)
    return text if re.fullmatch(r"[\w.\-/]+", text) else "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass
class TrialRunner:
    """The objective: one training process per trial."""

    settings: TuneSettings
    space: SearchSpace
    tune_dir: Path
    base_overrides: list[str]
    cpu_threads: int | None
    worker: str = ""  # the SLURM job running these trials, when workers are SLURM jobs

    def trial_dir(self, number: int) -> Path:
        return self.tune_dir / "trials" / f"{number:03d}"

    def command(self, trial: optuna.Trial, params: Mapping[str, Any]) -> list[str]:
        spec = {"storage": self.settings.storage, "study": self.settings.study, "number": trial.number,
                "metric": self.settings.metric, "pruner": self.settings.pruner,
                "startup_trials": self.settings.startup_trials, "warmup_epochs": self.settings.warmup_epochs}
        trial_override = "trial={" + ",".join(f"{k}:{override_value(v)}" for k, v in spec.items()) + "}"
        threads = [f"cpu_threads={self.cpu_threads}"] if self.cpu_threads else []
        return [sys.executable, "-m", "lit_vision.train", *self.base_overrides, *threads,
                *(f"{k}={override_value(v)}" for k, v in params.items()),
                f"hydra.run.dir={self.trial_dir(trial.number)}", trial_override]

    def __call__(self, trial: optuna.Trial) -> float:
        params = self.space.suggest(trial)
        run_dir = self.trial_dir(trial.number)
        trial.set_user_attr("run_dir", str(run_dir))
        if self.worker:
            trial.set_user_attr("worker", self.worker)
        log.info("trial %d: %s", trial.number, ", ".join(f"{k}={v}" for k, v in params.items()))
        started = time.monotonic()
        proc = subprocess.run(self.command(trial, params), capture_output=True, text=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        trial.set_user_attr("minutes", round((time.monotonic() - started) / 60, 3))
        if proc.returncode != 0:
            error = _last_error(proc.stderr + proc.stdout)
            trial.set_user_attr("error", error)
            raise TrialFailed(f"trial {trial.number} failed (exit {proc.returncode}): {error}")
        record = RunDir(run_dir).metrics()
        value = record.get(self.settings.metric)
        if record.get("pruned"):
            raise optuna.TrialPruned(f"pruned at epoch {record['pruned']['epoch']}")
        if not isinstance(value, (int, float)):
            trial.set_user_attr("error", f"{self.settings.metric} is not in {run_dir}/metrics.json")
            raise TrialFailed(f"trial {trial.number}: {self.settings.metric} is not in {run_dir}/metrics.json")
        return float(value)


def _last_error(output: str) -> str:
    """The training's error line (lit_vision's one-line errors are logged as ``[time][logger][ERROR] - message``),
    else the last line that mentions an error, else the last line."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", output) if line.strip()]  # \r: progress bar redraws
    logged = [line.split("[ERROR] - ", 1)[1] for line in lines if "[ERROR] - " in line]
    errors = logged or [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["no output"])[-1][:500]


def run_study(study: optuna.Study, runner: TrialRunner, n_jobs: int | None = None) -> None:
    """Run trials until the study holds ``n_trials`` finished (or running) ones; ``workers`` trials at once. Other
    workers on the same study stop together: each trial's end checks the study's total."""
    n_trials = runner.settings.n_trials
    remaining = n_trials - taken_trials(study)
    if remaining <= 0:
        log.info("study %s already has %d finished or running trials (tune.n_trials=%d): nothing to run",
                 study.study_name, taken_trials(study), n_trials)
        return
    n_jobs = n_jobs or runner.settings.workers
    log.info("study %s: %d trial(s) to run, %d at a time", study.study_name, remaining, n_jobs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(runner, n_trials=remaining, n_jobs=n_jobs, catch=(TrialFailed,),
                   callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=TAKEN)], gc_after_trial=False)


def trial_overview(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial as a plain row: number, state, value, parameters, minutes, run dir, error."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "params": dict(t.params), "minutes": t.user_attrs.get("minutes"),
                     "run_dir": t.user_attrs.get("run_dir"), "error": t.user_attrs.get("error"),
                     "worker": t.user_attrs.get("worker", ""),
                     "last_epoch": max(t.intermediate_values) if t.intermediate_values else None})
    return rows


__all__ = ["TrialRunner", "TuneSettings", "open_study", "run_study", "trial_overview"]
