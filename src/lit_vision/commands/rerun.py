"""``python -m lit_vision.rerun <run dir> [key=value ...] [--allow-changed]``: run a finished run's command again.

Examples::

    python -m lit_vision.rerun outputs/horse_cnn/runs/<time>                        # → outputs/horse_cnn/runs/<now>
    python -m lit_vision.rerun outputs/horse_cnn/runs/<time> trainer.max_epochs=30  # the same, plus a change

The command line is the run's own: the command from ``.hydra/hydra.yaml`` (train, evaluate, xgb, baseline, inspect)
and its overrides from ``.hydra/overrides.yaml``, then the extra overrides given here; the rerun gets a new run dir
(the command's default, a new timestamp). ``resume=`` is left out: a rerun starts from scratch, never in the old dir.

Before anything runs, the saved overrides are composed with today's config tree and compared with the run's
saved ``.hydra/config.yaml``, unresolved (``${paths.output_dir}`` is equal text in both): a key that differs means
the code's defaults changed since the run, so the same command no longer means the same config. The rerun is then
refused, naming each key with its saved and current value, unless ``--allow-changed``. With an unchanged config and
seed a CPU rerun gives the same test metrics and predictions (``tests/test_rerun.py``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from lit_vision.commands.arguments import ArgumentParser
from lit_vision.commands.runner import exit_on_user_error
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.records import RunDir
from lit_vision.runs.seeds import flatten

#: the Hydra commands whose runs can be rerun: ``hydra.job.config_name`` → ``python -m lit_vision.<name>``
COMMANDS = ("train", "evaluate", "xgb", "baseline", "inspect")
#: overrides a rerun leaves out: ``resume=<dir>`` would continue the old run in its own folder
DROPPED = ("resume",)
MISSING = "<absent>"


def saved_command(run_dir: Path) -> tuple[str, list[str]]:
    """The run's command (``train`` …) and its command-line overrides, from ``<run dir>/.hydra``."""
    run = RunDir(run_dir)
    for path in (run.hydra_file, run.overrides_file, run.config_file):
        if not path.is_file():
            raise LitVisionError(f"{path} not found: {run_dir} is not a run dir written by a lit_vision command "
                                 "(outputs/<task>/runs/<time> or a sweep job's folder)")
    command = run.command()
    if command not in COMMANDS:
        raise ConfigError(f"{run.hydra_file}: hydra.job.config_name={command!r} is no command rerun knows; "
                          f"one of {', '.join(COMMANDS)}")
    return command, run.overrides()


def compose(command: str, overrides: Sequence[str]) -> dict[str, Any]:
    """The job config today's tree composes from ``overrides``, unresolved, as plain containers."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lit_vision.config import CONF_DIR

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=list(overrides))
    finally:
        GlobalHydra.instance().clear()  # the command's own @hydra.main initialises Hydra again
    return OmegaConf.to_container(cfg, resolve=False)


def changed_keys(saved: dict[str, Any], composed: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Flattened keys whose value differs: ``{key: (saved, now)}``, :data:`MISSING` for a key on one side only."""
    old, new = flatten(saved), flatten(composed)
    return {key: (old.get(key, MISSING), new.get(key, MISSING)) for key in sorted(old.keys() | new.keys())
            if old.get(key, MISSING) != new.get(key, MISSING)}


def describe(changes: dict[str, tuple[Any, Any]]) -> str:
    return "; ".join(f"{key} (saved {old!r}, now {new!r})" for key, (old, new) in changes.items())


def check_unchanged(run_dir: Path, command: str, overrides: list[str], allow_changed: bool) -> None:
    """Refuse (or, with ``allow_changed``, warn) when today's config for the saved command is not the saved one."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    run = RunDir(run_dir)
    saved = run.config() or {}
    try:
        composed = compose(command, overrides)
    except (HydraException, OmegaConfBaseException) as exc:  # e.g. a preset removed, or made with --config-dir
        raise ConfigError(f"{run.overrides_file} no longer composes with today's config tree "
                          f"({exc}); the run cannot be repeated as it was") from exc
    changes = changed_keys(saved, composed)
    if not changes:
        return
    message = (f"the config of {run_dir} changed since it ran: its command composed today differs from "
               f"{run.config_file} in {describe(changes)}")
    if not allow_changed:
        raise ConfigError(f"{message}. Rerun anyway with --allow-changed, or pass the saved values as overrides")
    print(f"warning: {message}; rerunning anyway (--allow-changed)", file=sys.stderr)


def rerun_overrides(saved: list[str], extra: list[str], run_dir: Path) -> list[str]:
    """The saved overrides without :data:`DROPPED` keys, then ``extra``; refuse writing into ``run_dir`` itself."""
    kept = [o for o in saved if o.partition("=")[0].lstrip("+~") not in DROPPED]
    for override in extra:
        key, _, value = override.partition("=")
        if key == "hydra.run.dir" and Path(value).resolve() == run_dir.resolve():
            raise ConfigError(f"{override}: a rerun would overwrite the run it repeats; choose another "
                              "hydra.run.dir or leave it out (a new timestamped dir)")
    return kept + extra


def run(argv: Sequence[str]) -> Any:
    parser = ArgumentParser(prog="python -m lit_vision.rerun", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a finished run dir (with .hydra/)")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides, applied after the saved ones")
    parser.add_argument("--allow-changed", action="store_true",
                        help="rerun even when today's defaults give a different config than the saved one")
    args = parser.parse_intermixed_args(argv)
    command, saved = saved_command(args.run_dir)
    check_unchanged(args.run_dir, command, saved, args.allow_changed)
    overrides = rerun_overrides(saved, args.overrides, args.run_dir)
    print(f"rerunning {args.run_dir}: python -m lit_vision.{command} {' '.join(overrides)}", file=sys.stderr)
    argv_before = sys.argv
    sys.argv = [f"lit_vision.{command}", *overrides]  # the command's @hydra.main reads its overrides here
    try:
        return importlib.import_module(f"lit_vision.commands.{command}").main()
    finally:
        sys.argv = argv_before


def main(argv: Sequence[str] | None = None) -> Any:
    return exit_on_user_error(lambda: run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
