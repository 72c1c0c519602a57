"""``logger=mlflow``: runs you can browse in ``mlflow ui`` (an optional extra: ``pip install 'lit_vision[mlflow]'``).

Lightning's :class:`MLFlowLogger` logs the per-epoch metrics; :class:`MLflowRunLogger` adds what makes a run
findable and comparable there:

* the resolved config as parameters (``model.optimizer.lr`` …), logged when the run is created, instead of the
  model's own hyperparameters (a subset, which Lightning would also cut at 250 characters);
* tags: the run dir (``lit_vision.run_dir``) and the command-line overrides (``lit_vision.overrides``);
* after the run's report (:func:`log_run_report`): ``metrics.json``, ``history.csv``, ``plots/`` and the saved
  ``.hydra/`` config as artifacts, and the final ``val/*``/``test/*`` scalars the logger has not seen (DDP tests
  on a trainer without loggers);
* in a multirun, every job is a child of one parent run per sweep dir (``mlflow.parentRunId``); the parent is
  created by the first job, under a file lock, and its id kept in ``<sweep dir>/mlflow_parent.json``;
* a failing job's run is marked FAILED with its error (:func:`record_failure`, called by the runner), also when
  the job failed before its trainer existed — so a sweep's failures are visible next to its results.

``<run dir>/mlflow.json`` names the run (tracking URI, experiment and run id); ``resume=<run dir>`` continues
that MLflow run.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import logging
import re
import traceback
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_vision.errors import ConfigError
from lit_vision.runs import formats
from lit_vision.runs.records import (
    HISTORY_FILE,
    HYDRA_DIR,
    METRICS_FILE,
    MLFLOW_FILE,
    OPERATING_POINT_FILE,
    PLOTS_DIR,
)
from lit_vision.runs.seeds import flatten

log = logging.getLogger("lit_vision")

RUN_FILE = MLFLOW_FILE
#: seconds a tracking server has to answer its /health before a run goes on without it
SERVER_TIMEOUT_S = 5.0
PARENT_FILE = "mlflow_parent.json"
#: MLflow's limits (mlflow.utils.validation): parameter values, tag values, keys, entries per log_batch call
MAX_PARAM_VALUE, MAX_TAG_VALUE, MAX_KEY, BATCH = 6000, 8000, 250, 100
TRUNCATED = "… (truncated: the full config is the artifact config/config.yaml)"
#: run-dir files logged as artifacts after the report (those that exist), and the folders
REPORT_FILES = (METRICS_FILE, HISTORY_FILE, OPERATING_POINT_FILE)
REPORT_DIRS = {PLOTS_DIR: "plots", HYDRA_DIR: "config"}
PARENT_RUN_ID = "mlflow.parentRunId"
RUN_DIR_TAG, SWEEP_DIR_TAG, OVERRIDES_TAG, ERROR_TAG = (
    "lit_vision.run_dir", "lit_vision.sweep_dir", "lit_vision.overrides", "lit_vision.error")


def require_mlflow() -> None:
    """Raise a :class:`ConfigError` with the install command when MLflow is missing (checked before any data)."""
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError("logger=mlflow needs MLflow, which is not installed: pip install 'lit_vision[mlflow]' "
                          "(or choose logger=csv or logger=tensorboard)")


# --- the config as parameters ----------------------------------------------------------------------
def flat_params(cfg: DictConfig) -> dict[str, str]:
    """The config as ``{"model.optimizer.lr": "0.001", …}``: dotted keys (characters MLflow refuses become ``_``),
    JSON values for non-strings (``true``, ``null``, ``[0.8, 0.9]``), values over MLflow's limit truncated."""
    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException:  # an unresolvable value (the reason a job failed, maybe): log the raw interpolations
        tree = OmegaConf.to_container(cfg, resolve=False)
    flat: dict[str, str] = {}
    for key, value in flatten(tree).items():
        if key.split(".")[0] == "hydra":  # Hydra's own settings (present when composed by the compose API)
            continue
        key = re.sub(r"[^\w\-. /]", "_", key)[:MAX_KEY]
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        flat[key] = text if len(text) <= MAX_PARAM_VALUE else text[:MAX_PARAM_VALUE - len(TRUNCATED)] + TRUNCATED
    return flat


def run_tags(cfg: DictConfig) -> dict[str, str]:
    tags = {RUN_DIR_TAG: str(cfg.paths.output_dir)}
    overrides = _hydra_value("overrides.task")
    if overrides is not None:
        tags[OVERRIDES_TAG] = " ".join(overrides)[:MAX_TAG_VALUE]
    return tags


def _hydra_value(key: str) -> Any:
    from hydra.core.hydra_config import HydraConfig

    return OmegaConf.select(HydraConfig.get(), key) if HydraConfig.initialized() else None


def sweep_dir() -> Path | None:
    """The multirun's sweep dir (all its jobs share one parent run), ``None`` outside a multirun."""
    from hydra.types import RunMode

    return Path(str(_hydra_value("sweep.dir"))).resolve() if _hydra_value("mode") == RunMode.MULTIRUN else None


def default_run_name(run_dir: Path) -> str:
    """``<time>`` for a run; ``<job number>: <swept values>`` for a sweep job (its parent is named after the sweep)."""
    sweep = sweep_dir()
    if sweep is None:
        return run_dir.name
    swept = swept_overrides(list(_hydra_value("overrides.task") or []), sweep)
    return " ".join([f"{_hydra_value('job.num')}:", *swept])


def swept_overrides(job_overrides: list[str], sweep: Path) -> list[str]:
    """The job's overrides of the keys the sweep varies (``lr=0.1,0.01`` in ``<sweep>/multirun.yaml``, which Hydra's
    basic sweeper writes; ``lr=0.1`` in the job); all of them when that file is missing or names no such key."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        shared = OmegaConf.select(OmegaConf.load(sweep / "multirun.yaml"), "hydra.overrides.task") or []
    except OSError:
        return job_overrides
    parser = OverridesParser.create()
    swept = {o.key_or_group for o in parser.parse_overrides(list(shared)) if o.is_sweep_override()}
    chosen = [text for text, o in zip(job_overrides, parser.parse_overrides(job_overrides))
              if o.key_or_group in swept]
    return chosen or job_overrides


# --- the logger -------------------------------------------------------------------------------------
class MLflowRunLogger(MLFlowLogger):
    """Lightning's MLflow logger with the config as parameters, run-dir tags and sweep parents (module docs).

    ``conf/logger/mlflow.yaml`` builds it; the training command (``commands/train.py``, ``tracked_loggers``) hands
    it the run's config (:meth:`attach_config`)."""

    def __init__(self, **kwargs: Any) -> None:
        require_mlflow()
        super().__init__(**kwargs)
        self.server = str(kwargs.get("tracking_uri") or "")
        self._cfg: DictConfig | None = None
        self._run_dir: Path | None = None
        self._group: Path | None = None
        self._group_kind = "sweep"

    def attach_config(self, cfg: DictConfig) -> None:
        """Log ``cfg`` as the run's parameters; continue the run in ``<run dir>/mlflow.json`` on ``resume=``."""
        self._cfg = cfg
        self._run_dir = Path(cfg.paths.output_dir)
        # the runs that share a parent: a multirun's jobs, or a lit_vision.tune study's trials (<tune dir>/trials/<n>)
        self._group = sweep_dir() or (self._run_dir.parent.parent if cfg.get("trial") else None)
        self._group_kind = "study" if cfg.get("trial") else "sweep"
        self.tags = {**run_tags(cfg), **(self.tags or {})}
        if self._run_name is None:
            self._run_name = default_run_name(self._run_dir)
        previous = read_json(self._run_dir / RUN_FILE)
        if cfg.get("resume") and previous.get("tracking_uri") == self.server:
            self._run_id = previous.get("run_id")

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        resumed = self._run_id is not None
        if not resumed:
            self._experiment_id = experiment_id(self._mlflow_client, self._experiment_name, self._artifact_location)
            parent = self._group
            if parent is not None:
                self.tags = {**(self.tags or {}), PARENT_RUN_ID: parent_run(
                    self._mlflow_client, self._experiment_id, parent, self._group_kind)}
        client = MLFlowLogger.experiment.fget(self)  # Lightning creates (or finds) the run
        if self._cfg is not None:
            write_run_file(self._run_dir, self._tracking_uri, self._experiment_id, self._run_id)
            log_params(client, self._run_id, flat_params(self._cfg))
        log.info("MLflow run %s in experiment %r (%s)", self._run_id, self._experiment_name, self._tracking_uri)
        return client

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """The model's hyperparameters are a subset of the config already logged; log them only without one."""
        if self._cfg is None:
            super().log_hyperparams(params)

    @rank_zero_only
    def log_report(self, run_dir: Path, record: Mapping[str, Any]) -> None:
        """The report's files as artifacts and the final scalars the run lacks (see the module docs)."""
        client, run_id = self.experiment, self.run_id
        for name in REPORT_FILES:
            if (run_dir / name).is_file():
                client.log_artifact(run_id, str(run_dir / name))
        for folder, artifact_path in REPORT_DIRS.items():
            if (run_dir / folder).is_dir():
                client.log_artifacts(run_id, str(run_dir / folder), artifact_path)
        logged = client.get_run(run_id).data.metrics
        missing = {k: float(v) for k, v in record.items()
                   if k.startswith(("val/", "test/")) and isinstance(v, (int, float)) and k not in logged}
        if missing:
            self.log_metrics(missing)
        end_parent(client, client.get_run(run_id))


def experiment_id(client: Any, name: str, artifact_location: str | None) -> str:
    found = client.get_experiment_by_name(name)
    if found is not None and found.lifecycle_stage != "deleted":
        return found.experiment_id
    return client.create_experiment(name=name, artifact_location=artifact_location)


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created): jobs launched in parallel create one parent, not one each."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def parent_run(client: Any, experiment: str, sweep: Path, kind: str = "sweep") -> str:
    """The sweep's (or study's) parent run id: from ``<sweep>/mlflow_parent.json``, or a new run named
    ``<kind> <sweep dir name>``."""
    with locked(sweep / (PARENT_FILE + ".lock")):
        known = read_json(sweep / PARENT_FILE)
        if known.get("tracking_uri") == client.tracking_uri and known.get("experiment_id") == experiment:
            client.update_run(known["run_id"], status="RUNNING")
            return known["run_id"]
        run = client.create_run(experiment, run_name=f"{kind} {sweep.name}",
                                tags={SWEEP_DIR_TAG: str(sweep)})
        write_json(sweep / PARENT_FILE, {"tracking_uri": client.tracking_uri, "experiment_id": experiment,
                                          "run_id": run.info.run_id})
        return run.info.run_id


def end_parent(client: Any, run: Any) -> None:
    """Mark the sweep's parent finished when a child ends: the last job to end leaves it FINISHED at its end."""
    parent = run.data.tags.get(PARENT_RUN_ID)
    if parent:
        client.set_terminated(parent, "FINISHED")


def log_params(client: Any, run_id: str, params: Mapping[str, str]) -> None:
    """Log ``params``, skipping those the run already has (a resumed run): MLflow refuses to change a parameter;
    a changed value is named in a warning and stays in the new ``config/config.yaml`` artifact."""
    from mlflow.entities import Param

    existing = client.get_run(run_id).data.params
    changed = sorted(k for k, v in params.items() if k in existing and existing[k] != v)
    if changed:
        log.warning("MLflow keeps the first value of a parameter; changed on resume: %s", ", ".join(changed))
    todo = [Param(k, v) for k, v in params.items() if k not in existing]
    for start in range(0, len(todo), BATCH):
        client.log_batch(run_id, params=todo[start:start + BATCH])


def read_json(path: Path) -> dict[str, Any]:
    try:
        return formats.read_json(path)
    except (OSError, ValueError):
        return {}


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    formats.write_json(path, record)


def write_run_file(run_dir: Path | None, tracking_uri: str, experiment: str | None, run_id: str | None) -> None:
    if run_dir is not None:
        write_json(run_dir / RUN_FILE, {"tracking_uri": tracking_uri, "experiment_id": experiment, "run_id": run_id})


# --- entry points for train.py and the runner ------------------------------------------------------
def mlflow_loggers(loggers: list[Any]) -> list[MLflowRunLogger]:
    return [lg for lg in loggers if isinstance(lg, MLflowRunLogger)]


def server_problem(tracking_uri: str, timeout_s: float = SERVER_TIMEOUT_S) -> str | None:
    """Why an ``http(s)://`` tracking server cannot be used now (its ``/health`` does not answer OK within
    ``timeout_s``); None when it can, or when the URI is not a server. MLflow's own client would retry for minutes."""
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(tracking_uri.rstrip("/") + "/health", timeout=timeout_s) as response:
            return None if response.status == 200 else f"/health answered {response.status}"
    except (OSError, ValueError) as exc:
        return str(getattr(exc, "reason", exc))


def reachable(loggers: list[Any]) -> list[Any]:
    """``loggers`` without the MLflow loggers whose server does not answer: such a run goes on with one warning,
    its run dir and CSV log written as always."""
    kept = []
    for logger in loggers:
        problem = server_problem(logger.server) if isinstance(logger, MLflowRunLogger) else None
        if problem is None:
            kept.append(logger)
        else:
            log.warning("MLflow tracking server %s does not answer (%s): this run is not tracked there; its run dir "
                        "and CSV log are written as usual", logger.server, problem)
    return kept


def log_run_report(trainer: Any, run_dir: Path, record: Mapping[str, Any]) -> None:
    """After ``metrics.json`` and the plots are written: log them to every MLflow run of ``trainer``."""
    for logger in mlflow_loggers(trainer.loggers):
        logger.log_report(run_dir, record)


def mlflow_entries(cfg: DictConfig) -> list[DictConfig]:
    group = OmegaConf.select(cfg, "logger", default=None)
    target = f"{__name__}.{MLflowRunLogger.__name__}"
    return [entry for entry in (group or {}).values() if isinstance(entry, DictConfig)
            and entry.get("_target_") == target]


def record_failure(cfg: DictConfig, exc: BaseException) -> None:
    """Mark the job's MLflow run FAILED with the error (tag and ``error.txt``); create the run when the job failed
    before its trainer did. Does nothing without ``logger=mlflow``; never raises (the job's own error matters)."""
    if rank_zero_only.rank != 0 or importlib.util.find_spec("mlflow") is None:
        return
    for entry in mlflow_entries(cfg):
        try:
            _record_failure(entry, cfg, exc)
        except Exception as problem:  # noqa: BLE001 - reporting must not hide the job's error
            log.warning("could not record the failure in MLflow: %s", problem)


def _record_failure(entry: DictConfig, cfg: DictConfig, exc: BaseException) -> None:
    from hydra.utils import instantiate

    logger: MLflowRunLogger = instantiate(entry)
    if server_problem(logger.server) is not None:
        return  # reported when the run started (reachable)
    logger.attach_config(cfg)
    known = read_json(Path(cfg.paths.output_dir) / RUN_FILE)
    if known.get("tracking_uri") == logger.server and known.get("run_id"):
        logger._run_id = known["run_id"]  # the run the trainer made
    client, run_id = logger.experiment, logger.run_id
    client.set_tag(run_id, ERROR_TAG, f"{type(exc).__name__}: {exc}"[:MAX_TAG_VALUE])
    client.log_text(run_id, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), "error.txt")
    client.set_terminated(run_id, "FAILED")
    end_parent(client, client.get_run(run_id))
