"""``python -m lit_vision.reproduce``: every notebook row as its own run, one at a time, then the tables.

Examples::

    python -m lit_vision.reproduce                                    # every row, its own seeds, full budget
    python -m lit_vision.reproduce presets=[horse_cnn,mnist_cnn] seeds=[42,43]
    python -m lit_vision.reproduce budget=quick                       # a smoke test of the machinery, minutes
    python -m lit_vision.reproduce run=false                          # only rewrite the tables from the runs

Rows, references and budgets: ``conf/reproduce.yaml``. A finished run (``metrics.json``) is skipped, a stopped one
(``checkpoints/last.ckpt``, no ``metrics.json``) continues with ``resume=``, a failing one is recorded and the others
go on; the exit code is 1 when a run failed. Tables: ``<out>/results.md``; with ``budget=full`` also the marked
blocks of ``docs/results.md`` and ``README.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lit_vision.checks import MAX_SEED, flag, seed_value
from lit_vision.commands.runner import hydra_command
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.reproduction import launch, machine, markers, plan, tables
from lit_vision.runs.paths import project_root

log = logging.getLogger("lit_vision.reproduce")
RESULTS_HEADING = "## Notebook rows, regenerated"


class ReproduceError(LitVisionError):
    """Some runs failed or were blocked; the tables were written all the same."""


def absolute(path: str | Path) -> Path:
    """A configured path; relative ones are under the project root."""
    return (project_root() / Path(path).expanduser()).resolve()


def is_list(value: Any, item: type) -> bool:
    return isinstance(value, list) and all(isinstance(v, item) and not isinstance(v, bool) for v in value)


def check_settings(spec: Mapping[str, Any]) -> None:
    """Every command-line key, before any run starts (which rows ``presets`` names: :func:`plan.select`)."""
    if spec["budget"] not in plan.BUDGETS or spec["budget"] not in spec["budgets"]:
        raise ConfigError(f"budget={spec['budget']!r} is not one of {list(plan.BUDGETS)}")
    if spec["presets"] is not None and not is_list(spec["presets"], str):
        raise ConfigError(f"presets={spec['presets']!r} must be a list of row names, e.g. presets=[horse_cnn] "
                          "(presets=null for every row)")
    seeds = spec["seeds"]
    if seeds is not None and (not is_list(seeds, int) or not all(0 <= s <= MAX_SEED for s in seeds)):
        raise ConfigError(f"seeds={seeds!r} must be a list of integers from 0 to {MAX_SEED}, e.g. seeds=[42,43] "
                          "(seeds=null for each row's own)")
    seed_value(spec["first_seed"], "first_seed")
    flag(spec["run"], "run")
    for where, by_command in [("overrides", spec["overrides"])] + [
            (f"budgets.{b}.overrides", spec["budgets"][b]["overrides"]) for b in spec["budgets"]]:
        unknown = set(by_command or {}) - set(plan.PRESET_KEY)
        if unknown:
            raise ConfigError(f"{where} has {sorted(unknown)}: overrides are given per command, one of "
                              f"{sorted(plan.PRESET_KEY)} (e.g. overrides.train=[accelerator=cuda])")
        for command, overrides in (by_command or {}).items():
            if overrides is not None and not is_list(overrides, str):
                raise ConfigError(f"{where}.{command}={overrides!r} must be a list of overrides, e.g. "
                                  f"{where}.{command}=[accelerator=cuda]")
    if absolute(spec["out"]).is_file():
        raise ConfigError(f"out={spec['out']}: a file; point it at a folder (made when missing) for the run dirs")
    if spec["run"] and not absolute(spec["data_root"]).is_dir():
        raise ConfigError(f"data_root={spec['data_root']}: no such folder; point it at the folder holding MNIST/, "
                          "FashionMNIST/, cifar10-jpeg/ and fer2013/ (e.g. data_root=../shared/datasets), or pass "
                          "run=false to only write the tables")


def progress(i: int, n: int, outcome: launch.Outcome) -> str:
    """One line per run, e.g. ``[3/8] horse_cnn seed 44: ok (resumed) in 1.2 min``."""
    text = f"[{i}/{n}] {outcome.run.name}: {outcome.status}"
    if outcome.resumed:
        text += " (resumed)"
    if outcome.status in ("ok", "failed"):
        text += f" in {outcome.seconds / 60:.1f} min"
    if outcome.status == "failed":
        detail = f" ({outcome.detail})" if outcome.detail else ""
        text += f", exit {outcome.exit_code}{detail}; log {outcome.log}"
    elif outcome.detail:
        text += f" ({outcome.detail})"
    return text


def run_all(runs: Sequence[plan.Run], spec: Mapping[str, Any],
            launcher: launch.Launcher = launch.subprocess_launcher) -> list[launch.Outcome]:
    """Every run, one at a time, with one progress line each."""
    budget = spec["budget"]
    overrides = spec["budgets"][budget]["overrides"]
    data_root, where = absolute(spec["data_root"]), machine.describe()
    outcomes = []
    for i, run in enumerate(runs, 1):
        argv_for = partial(plan.command_line, run, data_root, overrides.get(run.row.command) or [],
                           spec["overrides"].get(run.row.command) or [])
        if not launch.finished(run.dir):
            log.info("[%d/%d] %s: %s", i, len(runs), run.name,
                     "resuming from last.ckpt" if launch.resumable(run) else "starting")
        outcome = launch.execute(run, budget, argv_for, plan.before_line(run), where, project_root(), launcher,
                                 data_root)
        log.info("%s", progress(i, len(runs), outcome))
        outcomes.append(outcome)
    return outcomes


def write_tables(rows: Sequence[plan.Row], spec: Mapping[str, Any]) -> list[Path]:
    """``<out>/results.md`` always; the marked blocks of docs/results.md and README.md under the full budget only."""
    budget, out = spec["budget"], absolute(spec["out"])
    found = tables.read_all(rows, out)
    section = tables.results_section(found, spec, budget, out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.md").write_text(f"# Notebook rows, budget={budget}\n\n{section}")
    written = [out / "results.md"]
    if budget != "full":
        log.info("budget=%s: tables in %s only (docs/results.md and README.md take budget=full)", budget, out)
    elif not any(r.records for r in found):
        log.warning("no finished run in %s: docs/results.md and README.md left as they are", out)
    else:
        written += markers.write_blocks({
            absolute(spec["tables"]["results"]): (section, RESULTS_HEADING),
            absolute(spec["tables"]["readme"]): (tables.readme_section(found, spec, budget), None)})
    return written


def run(cfg: DictConfig) -> dict[str, Any]:
    spec = OmegaConf.to_container(cfg, resolve=True)
    check_settings(spec)
    rows = plan.load_rows(spec)
    outcomes: list[launch.Outcome] = []
    if spec["run"]:
        chosen = plan.select(rows, spec["presets"])
        runs = plan.plan_runs(chosen, absolute(spec["out"]), spec["seeds"], int(spec["first_seed"]),
                              spec["budgets"][spec["budget"]]["n_seeds"])
        outcomes = run_all(runs, spec)
    for path in write_tables(list(rows.values()), spec):
        log.info("tables written to %s", path)
    bad = [o for o in outcomes if o.status in ("failed", "blocked")]
    if bad:
        raise ReproduceError(f"{len(bad)} of {len(outcomes)} runs did not finish (the tables list them): "
                             + "; ".join(f"{o.run.name} {o.status} (log {o.log})" for o in bad))
    return {"runs": len(outcomes), "ran": sum(o.status == "ok" for o in outcomes)}


main = hydra_command("reproduce", run)


if __name__ == "__main__":
    main()
