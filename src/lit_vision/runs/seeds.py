"""Runs that differ only in their seed: which runs those are, and mean ± std over them (no torch here).

Used by ``python -m lit_vision.compare`` and by the multirun summary (:mod:`lit_vision.runs.sweep_summary`).

* Two runs are *seed replicates* when their saved configs (``.hydra/config.yaml``, unresolved as Hydra saves it)
  are equal once :func:`ignored` keys are dropped: ``seed`` and the keys that only say where a run reads or writes
  its files (``paths.*``, ``resume``, ``trainer.default_root_dir``, ``callbacks.*.dirpath``,
  ``logger.*.save_dir``, ``data.cache_dir``), plus ``ckpt_path`` when it only continues the run (null, ``last``,
  ``auto``). A ``ckpt_path`` naming a file stays: it says which model an ``evaluate``/``xgb`` run scored, or what
  a run was fine-tuned from. Every other key counts, even those that do not change the numbers (e.g. a removed
  progress bar): equal results are not proven by the config, so grouping errs on the side of keeping runs apart.
* A run without ``.hydra/config.yaml`` (an XGBoost ``source_model/`` report, a hand-made folder) is never grouped:
  nothing says how it was configured.
* Statistics are over the *finished* runs of a group: the mean and the sample standard deviation (ddof=1). A run
  that never reached a ``min to val/acc X`` threshold, or lacks a metric, is not averaged in silently: the cell
  says how many of the group's runs the numbers are over (``2 of 3 reached: 4.3 ± 0.4``).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table

from lit_vision.runs.markdown import markdown_table
from lit_vision.runs.paths import NEVER
from lit_vision.runs.records import RunDir

#: config keys about where a run's files are, not about the experiment (``fnmatch`` patterns of dotted keys)
LOCATION_KEYS = ("seed", "resume", "paths.*", "trainer.default_root_dir", "callbacks.*.dirpath",
                 "logger.*.save_dir", "data.cache_dir")
#: ``ckpt_path`` values that continue a run rather than start from another model
CONTINUE_CKPT = (None, "last", "auto")
TITLE = "mean ± std over seeds (sample std; n = finished runs)"


# --- reading a run ---------------------------------------------------------------------------------
def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; lists and empty mappings stay values."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def read_config(run: Path) -> dict[str, Any] | None:
    """The run's ``.hydra/config.yaml``, flattened; ``None`` when the run has none."""
    config = RunDir(run).config()
    return None if config is None else flatten(config)


def split_override(override: str) -> tuple[str, str]:
    """``+model.dropout=0.1`` → ``("model.dropout", "0.1")``."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def read_overrides(run: Path) -> dict[str, str]:
    """The run's command-line overrides (``.hydra/overrides.yaml``) as key → value; empty without the file."""
    return dict(split_override(o) for o in RunDir(run).overrides())


# --- grouping --------------------------------------------------------------------------------------
def ignored(key: str, value: Any) -> bool:
    """Whether a flattened config key is left out when deciding if two runs differ only in their seed."""
    if key == "ckpt_path":
        return value in CONTINUE_CKPT
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in LOCATION_KEYS)


def experiment(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without seed and location keys: what seed replicates share."""
    return {k: v for k, v in config.items() if not ignored(k, v)}


def group_indices(configs: Sequence[Mapping[str, Any] | None]) -> list[list[int]]:
    """Indices of runs with equal :func:`experiment` configs, groups in first-seen order; a run without a config
    (``None``) is a group of its own."""
    groups: dict[Any, list[int]] = {}
    for i, config in enumerate(configs):
        key = ("alone", i) if config is None else json.dumps(experiment(config), sort_keys=True, default=str)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def differing(maps: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys (in first-seen order) whose values are not the same in all ``maps``; ``seed`` and ``hydra.*`` left out."""
    keys = dict.fromkeys(k for m in maps for k in m if k != "seed" and not k.startswith("hydra."))
    return [k for k in keys if len({json.dumps(m.get(k), default=str) for m in maps}) > 1]


def group_labels(firsts: Sequence[int], configs: Sequence[Mapping[str, Any] | None],
                 overrides: Sequence[Mapping[str, str]]) -> list[str]:
    """What tells each group (given by its first run) apart: the override values that differ between the groups;
    when the overrides do not (same command, other defaults, e.g. another code version), the differing config keys
    (at most three)."""
    def join(source: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> list[str]:
        return [", ".join(f"{k}={m[k]}" for k in keys if k in m) for m in source]

    labels = join([overrides[i] for i in firsts], differing([overrides[i] for i in firsts]))
    if len(set(labels)) < len(labels):
        kept = [experiment(configs[i] or {}) for i in firsts]
        labels = join(kept, differing(kept)[:3])
    return labels


# --- statistics ------------------------------------------------------------------------------------
def numbers(values: Sequence[Any]) -> list[float]:
    """The finite numbers among ``values`` (blank, ``nan`` and :data:`NEVER` cells dropped)."""
    return [float(v) for v in values
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; ``nan`` below two values, ``nan`` mean for none)."""
    mean = statistics.fmean(values) if values else math.nan
    return mean, statistics.stdev(values) if len(values) >= 2 else math.nan


def mean_std_text(mean: float, std: float) -> str:
    """Four significant digits of the mean, the std to the same decimals: ``0.8812 ± 0.0042``, ``14.25 ± 0.31``."""
    decimals = max(0, 3 - math.floor(math.log10(abs(mean)))) if mean else 4
    return f"{mean:.{decimals}f}" + ("" if math.isnan(std) else f" ± {std:.{decimals}f}")


def stat_cell(values: Sequence[Any]) -> str:
    """``0.8812 ± 0.0042``; over a subset it says so: ``2 of 3 reached: 4.250 ± 0.354`` (the others never reached
    the threshold) or ``2 of 3 have it`` (the metric is missing); ``0 of 3 reached`` when none did. A single value
    has no std."""
    nums = numbers(values)
    word = "reached" if NEVER in values else "have it"
    if not nums:
        return f"0 of {len(values)} reached" if NEVER in values else ""
    text = mean_std_text(*mean_std(nums))
    return text if len(nums) == len(values) else f"{len(nums)} of {len(values)} {word}: {text}"


@dataclass
class SeedGroup:
    """Runs differing only in their seed. ``values``: column → the finished runs' cells."""

    name: str
    label: str
    seeds: list[Any]
    not_finished: list[str] = field(default_factory=list)
    values: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.seeds)


def seed_groups(rows: Sequence[Mapping[str, Any]], configs: Sequence[Mapping[str, Any] | None],
                overrides: Sequence[Mapping[str, str]], columns: Sequence[str],
                status: Sequence[str] | None = None, names: Sequence[str] | None = None) -> list[SeedGroup]:
    """Every group of at least two runs that differ only in their seed (``rows[i]`` is run ``i``'s table row).
    ``status``: ``ok`` for finished runs (default: all); the others are listed by ``names[i]`` and left out."""
    groups = [g for g in group_indices(configs) if len(g) >= 2]  # never a run without config: those are alone
    labels = group_labels([g[0] for g in groups], configs, overrides)
    cfg = [c or {} for c in configs]
    result = []
    for members, label in zip(groups, labels):
        done = [i for i in members if status is None or status[i] == "ok"]
        result.append(SeedGroup(
            name=f"{cfg[members[0]].get('task_name', '')} {label}".strip(), label=label,
            seeds=[cfg[i].get("seed") for i in done],
            not_finished=[f"{names[i] if names else i} (seed {cfg[i].get('seed')}: {status[i]})"
                          for i in members if status is not None and i not in done],
            values={c: [rows[i].get(c) for i in done] for c in columns}))
    return result


# --- tables ----------------------------------------------------------------------------------------
def filled(groups: Sequence[SeedGroup], columns: Sequence[str]) -> list[str]:
    """The columns with a number (or a :data:`NEVER`) in some group: blank columns are left out of seed tables."""
    return [c for c in columns if any(numbers(g.values.get(c, [])) or NEVER in g.values.get(c, []) for g in groups)]


def _head(groups: Sequence[SeedGroup]) -> list[str]:
    """``not finished`` only when a group has such runs (never in ``compare``: it reads finished runs)."""
    return ["group", "n", "seeds"] + (["not finished"] if any(g.not_finished for g in groups) else [])


def _head_cells(group: SeedGroup) -> dict[str, Any]:
    return {"group": group.name, "n": group.n, "seeds": ", ".join(map(str, group.seeds)),
            "not finished": "; ".join(group.not_finished)}


def display_rows(groups: Sequence[SeedGroup], columns: Sequence[str]) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of the human table: a ``mean ± std`` cell per (:func:`filled`) column."""
    columns = filled(groups, columns)
    rows = [{k: str(v) for k, v in _head_cells(g).items()} | {c: stat_cell(g.values[c]) for c in columns}
            for g in groups]
    return _head(groups) + list(columns), rows


def write_seed_csv(path: Path, groups: Sequence[SeedGroup], columns: Sequence[str]) -> Path:
    """One row per group; per (:func:`filled`) column ``<col> mean``, ``<col> std`` (sample) and ``<col> n`` (the
    finished runs with a number there: fewer than ``n`` when some never reached a threshold)."""
    columns = filled(groups, columns)
    header = _head(groups) + [f"{c} {s}" for c in columns for s in ("mean", "std", "n")]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        w.writeheader()
        for g in groups:
            row = _head_cells(g)
            for c in columns:
                nums = numbers(g.values[c])
                mean, std = mean_std(nums)
                row |= {f"{c} mean": "" if math.isnan(mean) else mean, f"{c} std": "" if math.isnan(std) else std,
                        f"{c} n": len(nums)}
            w.writerow(row)
    return path


def seed_markdown(groups: Sequence[SeedGroup], columns: Sequence[str]) -> str:
    """The human table as a markdown section."""
    header, rows = display_rows(groups, columns)
    return f"## {TITLE}\n\n" + markdown_table(header, ([r[k] for k in header] for r in rows)) + "\n"


def seed_rich_table(groups: Sequence[SeedGroup], columns: Sequence[str]) -> Table:
    header, rows = display_rows(groups, columns)
    table = Table(title=TITLE)
    for k in header:
        table.add_column(k, justify="left" if k in ("group", "seeds", "not finished") else "right", overflow="fold")
    for r in rows:
        table.add_row(*(r[k] for k in header))
    return table
