"""The rows of ``conf/reproduce.yaml`` and the runs one call of ``python -m lit_vision.reproduce`` makes.

A *row* is one notebook model as a preset of one command (``train``, ``xgb``, ``baseline``); a *run* is a row at
one seed, in its own folder ``<out>/<row>/seed<seed>``. Everything here is plain data: no process is started.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_vision.errors import ConfigError

#: the config key that names a row's preset, per command
PRESET_KEY = {"train": "experiment", "xgb": "xgb_preset", "baseline": "baseline_preset"}
#: commands whose runs write ``checkpoints/last.ckpt`` and continue with ``resume=<run dir>``
RESUMABLE = {"train"}
BUDGETS = ("full", "quick")
CONFIG = "conf/reproduce.yaml"


@dataclass(frozen=True)
class Row:
    """One notebook row (see ``row_defaults`` in ``conf/reproduce.yaml`` for what each field means)."""

    name: str
    command: str
    preset: str
    reference: str | None
    data: str
    n_seeds: int
    metrics: tuple[str, ...]
    overrides: tuple[str, ...]
    needs: str | None
    before: tuple[str, ...]
    note: str | None
    notebook: Mapping[str, float | None]

    @property
    def tabled(self) -> bool:
        """Helper rows (no reference) are run for the rows that need them, but have no line in the tables."""
        return self.reference is not None


@dataclass(frozen=True)
class Run:
    """A row at one seed: where it runs, and the run dir of the row it needs (``None`` when it needs none)."""

    row: Row
    seed: int
    dir: Path
    needs_dir: Path | None = None

    @property
    def name(self) -> str:
        return f"{self.row.name} seed {self.seed}"


def run_dir(out: Path, row: str, seed: int) -> Path:
    return Path(out) / row / f"seed{seed}"


# --- reading the config ----------------------------------------------------------------------------
def load_rows(spec: Mapping[str, Any]) -> dict[str, Row]:
    """``rows`` of the config, each merged over ``row_defaults`` and checked against ``metrics`` and ``references``."""
    defaults = dict(spec["row_defaults"])
    rows = {}
    for name, fields in spec["rows"].items():
        unknown = set(fields or {}) - set(defaults)
        if unknown:
            raise ConfigError(f"{CONFIG}: rows.{name} has unknown keys {sorted(unknown)}; a row has {sorted(defaults)}")
        merged = {**defaults, **(fields or {})}
        rows[name] = Row(name=name, command=merged["command"], preset=merged["preset"] or name,
                         reference=merged["reference"], data=merged["data"] or "", n_seeds=merged["n_seeds"],
                         metrics=tuple(merged["metrics"]), overrides=tuple(merged["overrides"]), needs=merged["needs"],
                         before=tuple(merged["before"]), note=merged["note"], notebook=dict(merged["notebook"] or {}))
    for row in rows.values():
        check_row(row, rows, spec)
    return rows


def check_row(row: Row, rows: Mapping[str, Row], spec: Mapping[str, Any]) -> None:
    where = f"{CONFIG}: rows.{row.name}"
    if row.command not in PRESET_KEY:
        raise ConfigError(f"{where}.command={row.command!r} is not one of {sorted(PRESET_KEY)}")
    if row.reference is not None and row.reference not in spec["references"]:
        raise ConfigError(f"{where}.reference={row.reference!r} is not a key of references: "
                          f"{sorted(spec['references'])}")
    if not isinstance(row.n_seeds, int) or isinstance(row.n_seeds, bool) or row.n_seeds < 1:
        raise ConfigError(f"{where}.n_seeds={row.n_seeds!r} must be a positive integer")
    missing = [m for m in row.metrics if m not in spec["metrics"]]
    if missing:
        raise ConfigError(f"{where}.metrics has {missing}, which `metrics` does not define ({sorted(spec['metrics'])})")
    stray = [m for m in row.notebook if m not in row.metrics]
    if stray:
        raise ConfigError(f"{where}.notebook has figures for {stray}, which are not in its metrics {list(row.metrics)}")
    if row.needs is not None:
        names = list(rows)
        if row.needs not in rows or names.index(row.needs) > names.index(row.name):
            raise ConfigError(f"{where}.needs={row.needs!r} must name a row listed above it")


# --- which runs ------------------------------------------------------------------------------------
def select(rows: Mapping[str, Row], presets: Sequence[str] | None) -> list[Row]:
    """The rows asked for (all when ``presets`` is None), plus the rows they need, in the config's order."""
    if presets is None:
        return list(rows.values())
    unknown = [p for p in presets if p not in rows]
    if unknown:
        raise ConfigError(f"presets={list(presets)}: {unknown} not rows of {CONFIG}; the rows are {list(rows)}")
    wanted = set()
    for name in presets:
        while name is not None and name not in wanted:
            wanted.add(name)
            name = rows[name].needs
    return [row for name, row in rows.items() if name in wanted]


def seeds_of(row: Row, seeds: Sequence[int] | None, first: int, n_seeds: int | None) -> list[int]:
    """``seeds`` when given (every row), else ``n_seeds`` (the budget's) or the row's own, counted up from ``first``."""
    if seeds is not None:
        return [int(s) for s in seeds]
    return [first + i for i in range(n_seeds or row.n_seeds)]


def plan_runs(rows: Sequence[Row], out: Path, seeds: Sequence[int] | None, first: int,
              n_seeds: int | None) -> list[Run]:
    """Every run, row after row; a needing row gets the run dir of its needed row at the same seed, or at that row's
    first seed when it runs fewer (e.g. one pretrained backbone for every seed of the head)."""
    seeds_by_row = {row.name: seeds_of(row, seeds, first, n_seeds) for row in rows}
    runs = []
    for row in rows:
        for seed in seeds_by_row[row.name]:
            needs_dir = None
            if row.needs is not None:
                theirs = seeds_by_row[row.needs]
                needs_dir = run_dir(out, row.needs, seed if seed in theirs else theirs[0])
            runs.append(Run(row, seed, run_dir(out, row.name, seed), needs_dir))
    return runs


# --- command lines ---------------------------------------------------------------------------------
def fill(arg: str, run: Run) -> str:
    """Replace ``{run}`` and ``{needs}`` in a row's argument."""
    if "{needs}" in arg and run.needs_dir is None:
        raise ConfigError(f"{CONFIG}: rows.{run.row.name} uses {{needs}} in {arg!r} but needs no row; set its `needs`")
    return arg.replace("{run}", str(run.dir)).replace("{needs}", str(run.needs_dir))


def command_line(run: Run, data_root: Path, budget_overrides: Sequence[str], extra: Sequence[str],
                 resume: bool) -> list[str]:
    """``python -m lit_vision.<command> <preset key>=<preset> seed=<s> hydra.run.dir=<dir> data.root=<root>/<data>``
    + the row's, the budget's and the extra overrides (+ ``resume=<dir>``)."""
    row = run.row
    data = Path(data_root) / row.data if row.data else Path(data_root)
    args = [sys.executable, "-m", f"lit_vision.{row.command}", f"{PRESET_KEY[row.command]}={row.preset}",
            f"seed={run.seed}", f"hydra.run.dir={run.dir}", f"data.root={data}",
            *(fill(o, run) for o in row.overrides), *budget_overrides, *extra]
    return args + [f"resume={run.dir}"] if resume else args


def before_line(run: Run) -> list[str] | None:
    """The row's ``before`` command (``python -m <module> <args>``), or None."""
    if not run.row.before:
        return None
    module, *args = run.row.before
    return [sys.executable, "-m", module, *(fill(a, run) for a in args)]
