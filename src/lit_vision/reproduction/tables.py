"""The reproduce tables, computed from the run dirs in ``<out>`` and the references in ``conf/reproduce.yaml``.

Every row of the config gets its lines, run or not; the numbers come from each run's metrics record (metrics,
epochs, training seconds) and ``reproduce.json`` (machine, CPU seconds of every attempt) — none is typed by hand.
``lit_vision`` cells are mean ± sample std over the finished seeds, with n; the mark compares that mean with the
higher of the notebook's figure and the Keras rerun's mean, knowing the noise of both (:data:`RULE`).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lit_vision.errors import ConfigError
from lit_vision.reproduction import machine
from lit_vision.reproduction.plan import Row
from lit_vision.runs.markdown import markdown_table
from lit_vision.runs.paths import project_root
from lit_vision.runs.records import MANIFEST_FILE, RunDir
from lit_vision.runs.seeds import mean_std, mean_std_text, numbers, stat_cell
from lit_vision.runs.tables import lookup

#: where a run's last history.csv row sits in its record (metric keys ``last_epoch.<column>``)
LAST_EPOCH = "last_epoch"
SEED_DIR = re.compile(r"seed(-?\d+)$")
#: float32 rounding of a metric near 1 (its spacing there is 6e-8): closer to a reference than this is a tie
TIE = 1e-6
DASH = "–"
#: the comparison every mark of the tables applies (:func:`mark`), stated in their legends
RULE = ("✓: the mean over our seeds is at or above the higher of the notebook's figure and the Keras rerun's mean; "
        "≈: below it by less than the noise, the larger of two standard errors of our mean (2 s / √n, n ≥ 2) and the "
        "Keras rerun's seed std (≥ 2 seeds); ✗: below it by more. With one seed of ours and no Keras spread the noise "
        "is unknown and counts as 0")
QUICK_WARNING = ("> **budget=quick: a smoke test of the machinery (one epoch of a few batches), not results.** "
                 "Never quote these numbers; the real tables come from `python -m lit_vision.reproduce` "
                 "(budget=full).")
HEADER = ["row", "notebook row", "metric", "notebook", "Keras rerun (n)", "lit_vision (n)", "vs both", "epochs",
          "train min", "machine", "CPU h"]


@dataclass
class RowRuns:
    """What the run dirs of one row hold: finished records by seed, the others, and the CPU time of all attempts."""

    row: Row
    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    machines: set[str] = field(default_factory=set)
    cpu_seconds: float = 0.0
    wall_seconds: float = 0.0
    budgets: set[str] = field(default_factory=set)


# --- reading the runs ------------------------------------------------------------------------------
def seed_dirs(out: Path, row: str) -> list[tuple[int, Path]]:
    """``<out>/<row>/seed<s>`` folders, by seed."""
    found = [(int(m.group(1)), p) for p in (Path(out) / row).glob("seed*")
             if p.is_dir() and (m := SEED_DIR.search(p.name))]
    return sorted(found)


def last_attempt_text(manifest: Mapping[str, Any] | None, run_dir: Path) -> str:
    attempts = (manifest or {}).get("attempts") or []
    if not attempts:
        return f"never started by reproduce ({run_dir})"
    code = attempts[-1].get("exit_code")
    state = "interrupted (no exit code)" if code is None else f"exit {code}"
    return f"{state} after {len(attempts)} attempt(s), log {RunDir(run_dir).reproduce_log}"


def read_row(row: Row, out: Path) -> RowRuns:
    runs = RowRuns(row)
    for seed, run_dir in seed_dirs(out, row.name):
        run = RunDir(run_dir)
        manifest = run.manifest()
        attempts = (manifest or {}).get("attempts") or []
        runs.cpu_seconds += sum(a.get("cpu_seconds") or 0.0 for a in attempts)
        runs.wall_seconds += sum(a.get("wall_seconds") or 0.0 for a in attempts)
        if manifest is not None:
            runs.budgets.add(manifest.get("budget"))
        if not run.finished:
            runs.unfinished.append(f"`{row.name}` seed {seed}: {last_attempt_text(manifest, Path(shown(run_dir)))}")
            continue
        history = run.history()
        runs.records[seed] = run.metrics() | ({LAST_EPOCH: history[-1]} if history else {})
        runs.machines |= {machine.label(a["machine"]) for a in attempts if a.get("machine")} or {
            f"unknown (no {MANIFEST_FILE})"}
    return runs


# --- cells -----------------------------------------------------------------------------------------
def figure(value: float) -> str:
    return format(float(value), "g")


def keras_cell(values: Sequence[float] | None) -> str:
    nums = numbers(values or [])
    return f"{mean_std_text(*mean_std(nums))} ({len(nums)})" if nums else DASH


def lit_cell(values: Sequence[Any], empty: str) -> str:
    """``mean ± std (n)``; ``empty`` (not run / not finished) without finished runs."""
    return f"{stat_cell(values)} ({len(values)})" if numbers(values) else (empty if not values else DASH)


def noise(values: Sequence[float], keras: Sequence[float]) -> float:
    """How far below the reference a mean may fall and still be within the noise: the larger of two standard errors
    of our mean (2 s / sqrt(n), n >= 2) and the Keras rerun's own seed spread (its sample std, >= 2 seeds)."""
    ours = 2 * mean_std(values)[1] / math.sqrt(len(values)) if len(values) >= 2 else 0.0
    theirs = mean_std(keras)[1] if len(keras) >= 2 else 0.0
    return max(ours, theirs)


def mark(values: Sequence[Any], notebook: float | None, keras: Sequence[float] | None) -> str:
    """:data:`RULE`: ✓, ≈ or ✗ for our runs' values against the notebook's figure and the Keras rerun's values;
    blank without a value or a reference.

    Metrics are logged as float32, so a validation accuracy of exactly 0.904 is stored as 0.90399998: a mean within
    float32 rounding (``TIE``) of the reference counts as reaching it."""
    kept = numbers(keras or [])
    refs = [float(notebook)] if notebook is not None else []
    refs += [mean_std(kept)[0]] if kept else []
    nums = numbers(values)
    if not nums or not refs:
        return ""
    shortfall = max(refs) - mean_std(nums)[0]
    if shortfall <= TIE:
        return "✓"
    return "≈" if shortfall < noise(nums, kept) else "✗"


def epochs_cell(records: Sequence[Mapping[str, Any]]) -> str:
    epochs = sorted({int(r["epochs_trained"]) for r in records if r.get("epochs_trained") is not None})
    return DASH if not epochs else str(epochs[0]) if len(epochs) == 1 else f"{epochs[0]}–{epochs[-1]}"


def minutes_cell(records: Sequence[Mapping[str, Any]]) -> str:
    nums = numbers([r.get("train_seconds") for r in records])
    return short(mean_std(nums)[0] / 60) if nums else DASH


def short(value: float) -> str:
    """One decimal from 1 up, two significant digits below (a quick run's 0.0042 h is not 0.00)."""
    return f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def hours(seconds: float) -> str:
    return short(seconds / 3600) if seconds else DASH


def figures(row: Row, ref: Mapping[str, Any], name: str, ref_name: str) -> tuple[float | None, list[float] | None]:
    """The notebook figure and Keras values a metric line compares with: the row's own notebook figure when it has
    one (a shorter budget compared at the same epoch: the Keras rerun ran the full budget, so it is left out)."""
    if name in row.notebook:
        return row.notebook[name], None
    return ref.get("notebook", {}).get(ref_name), (ref.get("keras") or {}).get(ref_name)


# --- tables ----------------------------------------------------------------------------------------
def metric_lines(runs: RowRuns, spec: Mapping[str, Any]) -> list[list[str]]:
    """One line per metric of the row; the run-level cells (epochs, minutes, machine, CPU h) on the first only."""
    row, records = runs.row, list(runs.records.values())
    ref = spec["references"][row.reference]
    empty = "not finished" if runs.unfinished else "not run"
    lines = []
    for i, name in enumerate(row.metrics):
        definition = spec["metrics"][name]
        ref_name = definition.get("reference") or name
        notebook, keras = figures(row, ref, name, ref_name)
        values = [lookup(r, definition["key"]) for r in records]
        run_cells = ([epochs_cell(records), minutes_cell(records), "; ".join(sorted(runs.machines)) or DASH,
                      hours(runs.cpu_seconds)] if i == 0 else [""] * 4)
        lines.append([f"`{row.name}`" if i == 0 else "", ref["title"] if i == 0 else "", name,
                      DASH if notebook is None else figure(notebook), keras_cell(keras), lit_cell(values, empty),
                      mark(values, notebook, keras), *run_cells])
    return lines


def notes(all_runs: Sequence[RowRuns], spec: Mapping[str, Any]) -> list[str]:
    """The rows' budget/recipe notes, then the references' notes, each once."""
    found = [f"- `{r.row.name}`: {r.row.note}" for r in all_runs if r.row.tabled and r.row.note]
    seen = []
    for r in all_runs:
        if r.row.tabled and r.row.reference not in seen and spec["references"][r.row.reference].get("note"):
            seen.append(r.row.reference)
    found += [f"- {spec['references'][k]['title']}: {spec['references'][k]['note']}" for k in seen]
    return found


def check_budgets(all_runs: Sequence[RowRuns], budget: str) -> None:
    other = {b for r in all_runs for b in r.budgets} - {budget}
    if other:
        raise ConfigError(f"the run dirs hold runs of budget {sorted(other)}, these tables are for budget={budget}: "
                          "runs of two budgets are never tabled together; point out= at one budget's folder")


def shown(path: Path) -> str:
    """``path`` relative to the project root when it is inside it (tables must not name one machine's folders)."""
    try:
        return str(Path(path).resolve().relative_to(project_root()))
    except ValueError:
        return str(path)


def intro(budget: str, out: Path) -> str:
    return (f"Generated {time.strftime('%Y-%m-%d %H:%M')} by `python -m lit_vision.reproduce budget={budget}` from the "
            f"runs in `{shown(out)}`; references in `conf/reproduce.yaml` (notebook: "
            "`../shared/docs/seed-reference.md`; Keras rerun on the same data: `../shared/docs/keras-reference.md`). "
            f"lit_vision: mean ± sample std over the finished seeds (n). vs both — {RULE}. train min: mean training "
            "minutes per run. CPU h: user + system hours of every attempt of the row.")


def results_section(all_runs: Sequence[RowRuns], spec: Mapping[str, Any], budget: str, out: Path) -> str:
    """The full table with its legend, notes, unfinished runs and totals (markdown)."""
    check_budgets(all_runs, budget)
    tabled = [r for r in all_runs if r.row.tabled]
    finished = sum(len(r.records) for r in all_runs)
    legend = ", ".join(f"**{k}** = {v['label']} (`{v['key']}`)" for k, v in spec["metrics"].items())
    parts = [QUICK_WARNING] if budget == "quick" else []
    parts += [intro(budget, out), markdown_table(HEADER, [line for r in tabled for line in metric_lines(r, spec)]),
              f"Metrics: {legend}."]
    if note_lines := notes(all_runs, spec):
        parts.append("Notes:\n\n" + "\n".join(note_lines))
    unfinished = [u for r in all_runs for u in r.unfinished]
    if unfinished:
        parts.append("Runs not finished:\n\n" + "\n".join(f"- {u}" for u in unfinished))
    total_cpu = sum(r.cpu_seconds for r in all_runs)
    total_wall = sum(r.wall_seconds for r in all_runs)
    parts.append(f"Total: {finished} finished run(s), covering {sum(bool(r.records) for r in tabled)} of "
                 f"{len(tabled)} rows; {short(total_cpu / 3600)} CPU hours, {short(total_wall / 3600)} hours of wall "
                 "time (helper runs and failed attempts included).")
    return "\n\n".join(parts) + "\n"


def readme_line(runs: RowRuns, spec: Mapping[str, Any]) -> list[str]:
    ref = spec["references"][runs.row.reference]
    records = list(runs.records.values())
    ours, theirs, marks = [], [], []
    for name in runs.row.metrics:
        definition = spec["metrics"][name]
        ref_name = definition.get("reference") or name
        values = [lookup(r, definition["key"]) for r in records]
        notebook, keras = figures(runs.row, ref, name, ref_name)
        ours.append(f"{name} {stat_cell(values) or DASH}")
        theirs.append(f"{name} {DASH if notebook is None else figure(notebook)} / {keras_cell(keras).split(' (')[0]}")
        marks.append(mark(values, notebook, keras) or DASH)
    result = ", ".join(ours) + f" (n={len(records)})" if records else "not finished" if runs.unfinished else "not run"
    return [f"`{runs.row.name}`", ref["title"], result, ", ".join(theirs), " ".join(marks), epochs_cell(records),
            minutes_cell(records)]


def readme_section(all_runs: Sequence[RowRuns], spec: Mapping[str, Any], budget: str) -> str:
    check_budgets(all_runs, budget)
    header = ["preset", "notebook row", "lit_vision test, mean ± std", "notebook / Keras rerun", "vs both", "epochs",
              "train min"]
    lines = [readme_line(r, spec) for r in all_runs if r.row.tabled]
    return (markdown_table(header, lines) + f"\n\nvs both — {RULE}. Generated by `python -m lit_vision.reproduce` "
            f"({time.strftime('%Y-%m-%d')}); per-seed spread, machine and CPU hours in "
            "[docs/results.md](docs/results.md).\n")


def read_all(rows: Sequence[Row], out: Path) -> list[RowRuns]:
    return [read_row(row, out) for row in rows]

