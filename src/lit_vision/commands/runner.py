"""One runner for every Hydra command (train, evaluate, xgb, baseline, inspect).

Each command is ``main = hydra_command("<config name>", run)``, where ``run(cfg)`` does the work and returns
its metrics record. The runner gives them all the same behaviour:

* config values are validated before any data is read, and the run is seeded;
* a user error (:class:`~lit_vision.errors.LitVisionError`, or a Hydra/OmegaConf error in the command line) is
  one message naming the culprit and the fix, with exit code 2 for config errors and 1 for the rest;
* inside a multirun a failing job writes ``<job dir>/error.json`` and returns NaN, so the sweep goes on and its
  summary lists the failure;
* with ``logger=mlflow`` a job that fails once it has started is a FAILED MLflow run; a config refused up front
  started nothing and makes no MLflow run;
* the value of ``optimized_metric`` from the record is returned to Hydra sweepers.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_vision.config import CONF_DIR, validate_config
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.sweep_summary import ERROR_FILE

log = logging.getLogger("lit_vision")

RunFn = Callable[[DictConfig], Mapping[str, Any] | None]
#: a command's own up-front check of its keys (``baseline.*``, ``xgb.*`` ...), run after :func:`validate_config`
CheckFn = Callable[[DictConfig], None]
T = TypeVar("T")
EXIT_CONFIG, EXIT_OTHER = 2, 1


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def record_failure(job_dir: Path, exc: BaseException) -> float:
    """Write ``<job_dir>/error.json`` (type, message, traceback) and return NaN for the sweeper."""
    job_dir.mkdir(parents=True, exist_ok=True)
    error = {"type": type(exc).__name__, "message": str(exc),
             "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))}
    (job_dir / ERROR_FILE).write_text(json.dumps(error, indent=2))
    log.error("job failed (%s: %s); recorded in %s, the sweep goes on", error["type"], exc, job_dir / ERROR_FILE)
    return math.nan


def record_tracked_failure(cfg: DictConfig, exc: BaseException) -> None:
    """``logger=mlflow``: the job's MLflow run is marked FAILED with the error (:mod:`lit_vision.runs.tracking`)."""
    if OmegaConf.select(cfg, "logger", default=None):
        from lit_vision.runs.tracking import record_failure as record_in_mlflow

        record_in_mlflow(cfg, exc)


def exit_code(exc: BaseException) -> int:
    return EXIT_CONFIG if isinstance(exc, (ConfigError, HydraException, OmegaConfBaseException)) else EXIT_OTHER


def exit_on_user_error(command: Callable[[], T]) -> T:
    """For the argparse commands (predict, compare, export_backbone): the same message and exit codes."""
    try:
        return command()
    except LitVisionError as exc:
        print(f"error: {exc}", file=sys.stderr)  # plain print: a path in a message must not be wrapped
        sys.exit(exit_code(exc))


def seed(value: int) -> None:
    from lightning.fabric.utilities.seed import seed_everything

    seed_everything(int(value), workers=True, verbose=False)


def execute(run: RunFn, cfg: DictConfig, check: CheckFn | None = None) -> float | None:
    """Validate (the shared keys, then the command's own with ``check``), seed and run one job; handle its failure
    as described in the module docstring. A command without a ``seed`` key (reproduce: it only launches runs, each
    with its own seed) is not seeded, so it never imports Lightning."""
    started = False
    try:
        validate_config(cfg)
        if check is not None:
            check(cfg)
        started = True
        if "seed" in cfg:
            seed(cfg.seed)
        record = run(cfg) or {}
    except Exception as exc:
        if started:  # a config refused up front ran nothing: no tracked run for it
            record_tracked_failure(cfg, exc)
        if in_multirun():
            return record_failure(Path(cfg.paths.output_dir), exc)
        if isinstance(exc, LitVisionError):
            log.error("%s", exc)
            sys.exit(exit_code(exc))
        raise
    metric = cfg.optimized_metric
    return record.get(metric) if metric else None


def culprit(args: list[str]) -> str:
    """``"in 'key=[': "`` for the command-line override Hydra refused without naming it, else ``""``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    overrides = [a for a in args if not a.startswith("-")]
    for arg in overrides:
        try:
            parser.parse_overrides([arg])
        except HydraException:
            return f"in {arg!r}: "
    for arg in overrides:  # `group=null` is refused by Hydra without naming the group
        key, _, value = arg.partition("=")
        if value == "null" and "." not in key and not key.startswith(("+", "~")):
            return f"in {arg!r} (to leave a config group out write ~{key}): "
    return ""


def raised_by_us(exc: BaseException) -> LitVisionError | None:
    """The lit_vision error behind ``exc``: OmegaConf wraps what a resolver raises (twice, with the config's node)."""
    seen: BaseException | None = exc
    while seen is not None and not isinstance(seen, LitVisionError):
        seen = seen.__cause__ or seen.__context__
    return seen


def hydra_command(config_name: str, run: RunFn, check: CheckFn | None = None) -> Callable[[], Any]:
    """The ``main()`` of a command: Hydra composes ``conf/<config_name>.yaml`` and :func:`execute` runs it;
    ``check(cfg)`` checks the command's own keys before any data is read."""
    import hydra

    started = False

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)
    def task(cfg: DictConfig) -> float | None:
        nonlocal started
        started = True
        return execute(run, cfg, check)

    def main() -> Any:
        nonlocal started
        started = False
        # Hydra reports a bad override or config with exit code 1 and a hint; we raise it (HYDRA_FULL_ERROR) to
        # report it as the config error it is: exit 2 and one line naming the key or option.
        previous = os.environ.get("HYDRA_FULL_ERROR")
        os.environ["HYDRA_FULL_ERROR"] = "1"
        try:
            return task()
        except (HydraException, OmegaConfBaseException, ValueError) as exc:
            if started and not isinstance(exc, (HydraException, OmegaConfBaseException)):
                raise  # a ValueError from inside the job is a bug, not a command-line mistake
            ours = raised_by_us(exc)  # a resolver's check (e.g. tune's study folder): its own one line
            message = str(ours) if ours is not None else f"{culprit(sys.argv[1:])}{exc}"
            print(f"config error: {message}\nSee the options with --help.", file=sys.stderr)
            sys.exit(EXIT_CONFIG)
        finally:
            if previous is None:
                os.environ.pop("HYDRA_FULL_ERROR", None)
            else:
                os.environ["HYDRA_FULL_ERROR"] = previous

    main.__doc__ = f"Run the ``{config_name}`` command (Hydra config ``conf/{config_name}.yaml``)."
    return main
