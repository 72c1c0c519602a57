"""``python -m lit_vision.compare <run dirs or globs>``: one side-by-side table of finished runs.

Examples::

    python -m lit_vision.compare outputs/fer_custom_cnn/runs/<time> outputs/fer_custom_xgb/runs/<time> \\
        outputs/fer_vgg16/runs/<time> --ensemble --out outputs/compare/notebook004
    python -m lit_vision.compare 'outputs/horse_*/runs/*'

Reads each run's ``metrics.json`` (neural, XGBoost and baseline runs all write one) and prints model, seed, val
and test accuracy, precision, recall, F1, AUROC, TP/FP/FN/TN and, where the run recorded them, epochs, training
minutes and minutes to each ``val/acc`` threshold (``never`` when not reached); writes ``<out>.csv`` and ``<out>.md``.
``--ensemble`` adds mean-probability and majority-vote rows computed from the runs' ``predictions.csv`` (the runs
must share one test set, i.e. the same data config and seed).

Runs that differ only in their seed (equal ``.hydra/config.yaml`` without seed and location keys, see
:mod:`lit_vision.runs.seeds`) also get one row per group in a second table, mean ± sample std and n of every number
column, written to ``<out>_seeds.csv`` and appended to ``<out>.md``. Runs without ``.hydra/config.yaml`` (e.g. an
XGBoost ``source_model/`` report) are never grouped; their seed cell is blank.
"""

from __future__ import annotations

import csv
import glob
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lit_vision.commands.arguments import ArgumentParser, output_file
from lit_vision.commands.runner import exit_on_user_error
from lit_vision.deploy.ensembles import majority_vote, mean_probability
from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.paths import (
    default_output,
    run_dir_of_checkpoint,
    run_name,
)
from lit_vision.runs.records import METRICS_FILE, RunDir
from lit_vision.runs.seeds import (
    read_config,
    read_overrides,
    seed_groups,
    seed_markdown,
    seed_rich_table,
    write_seed_csv,
)
from lit_vision.runs.tables import markdown_rows, metric_cells

#: columns of every table; timing columns (:func:`~lit_vision.runs.paths.timing_cells`) follow when a run has them
COLUMNS = ["model", "run", "seed", "val/acc", "test/acc", "test/precision", "test/recall", "test/f1", "test/auroc",
           "test/loss", "TP", "FP", "FN", "TN"]
METRICS = COLUMNS[3:10]
#: the count columns and where a record keeps them
COUNTS = {k: f"counts.{k.lower()}" for k in COLUMNS[10:]}


def find_runs(items: Sequence[str]) -> list[Path]:
    """Finished run dirs (holding their metrics record) from paths and globs, in the given order, without
    duplicates; a path to the record itself stands for its run dir."""
    runs: list[Path] = []
    for item in items:
        matches = [Path(m) for m in sorted(glob.glob(item))] or [Path(item)]
        for path in matches:
            path = path.parent if path.name == METRICS_FILE else path
            if not RunDir(path).finished:
                if len(matches) == 1:
                    raise LitVisionError(f"{item}: no {METRICS_FILE} in {path} (pass finished run directories, "
                                         "e.g. outputs/<task>/runs/<time>)")
                continue
            runs.append(path.resolve())
    return list(dict.fromkeys(runs))


def display_name(run: Path, record: dict[str, Any]) -> str:
    """The task name; an XGBoost run's ``source_model/`` report is named after the network's own run."""
    if run.name == "source_model" and record.get("checkpoint"):
        return run_name(run_dir_of_checkpoint(Path(record["checkpoint"])))
    return run_name(run)


def row_for(record: dict[str, Any], name: str, run: str) -> dict[str, Any]:
    return {"model": name, "run": run} | metric_cells(record, {**{k: k for k in METRICS}, **COUNTS})


def table_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """:data:`COLUMNS`, then the timing columns any row has (in first-seen order)."""
    return COLUMNS + list(dict.fromkeys(k for r in rows for k in r if k not in COLUMNS))


def read_predictions(run: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sources, targets, probabilities) of a run's ``predictions.csv``."""
    rows = RunDir(run).predictions()
    if not rows:
        raise LitVisionError(f"{RunDir(run).predictions_file} is missing or empty")
    pcols = [c for c in rows[0] if c.startswith("p_")]
    return ([r["source"] or r["index"] for r in rows], np.array([int(r["target"]) for r in rows]),
            np.array([[float(r[c]) for c in pcols] for r in rows]))


def ensemble_rows(runs: Sequence[Path], class_names: list[str]) -> list[dict[str, Any]]:
    # torch: only when ensembles are scored
    from lit_vision.runs.reporting import build_record

    preds = [read_predictions(r) for r in runs]
    sources, targets, _ = preds[0]
    for run, (src, tgt, _) in zip(runs[1:], preds[1:]):
        if src != sources or not np.array_equal(tgt, targets):
            raise LitVisionError(f"--ensemble: {run} was tested on other images than {runs[0]}; ensembles need "
                                 "runs on the same data config and seed")
    stack = np.stack([p for _, _, p in preds])
    rows = []
    for name, probs in (("ensemble: mean probability", mean_probability(stack)),
                        ("ensemble: majority vote", majority_vote(stack))):
        probs = probs / probs.sum(axis=1, keepdims=True)
        record = build_record({"test": (probs, targets)}, class_names)
        row = row_for(record, name, f"{len(runs)} runs")
        if "majority" in name:
            row["test/loss"] = None  # vote shares are not probabilities: no meaningful log loss
        rows.append(row)
    return rows


def fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if np.isnan(value) else f"{value:.4f}"
    return str(value)


def write_tables(rows: Sequence[dict[str, Any]], out: Path, columns: Sequence[str] = COLUMNS) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out.with_suffix(".csv"), out.with_suffix(".md")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns))
        w.writeheader()
        w.writerows({k: fmt(r.get(k)) for k in columns} for r in rows)
    md_path.write_text(markdown_rows(columns, rows, fmt) + "\n")
    return csv_path, md_path


def write_seed_tables(runs: Sequence[Path], configs: Sequence[dict[str, Any] | None], rows: Sequence[dict[str, Any]],
                      columns: Sequence[str], out: Path, console: Console) -> None:
    """The mean ± std table of the runs that differ only in their seed, if any: printed, ``<out>_seeds.csv`` and
    appended to ``<out>.md``."""
    groups = seed_groups(rows, configs, [read_overrides(r) for r in runs], columns[3:])
    if not groups:
        return
    Console(width=max(console.width, 60 + 20 * len(columns))).print(seed_rich_table(groups, columns[3:]))
    seeds_csv = write_seed_csv(out.with_name(out.name + "_seeds.csv"), groups, columns[3:])
    md_path = out.with_suffix(".md")
    md_path.write_text(md_path.read_text() + "\n" + seed_markdown(groups, columns[3:]))
    console.print(f"written {seeds_csv}; the table is also in {md_path}")


def compare(items: Sequence[str], out: Path, ensemble: bool = False) -> list[dict[str, Any]]:
    runs = find_runs(items)
    if not runs:
        raise LitVisionError(f"no finished runs ({METRICS_FILE}) found in " + ", ".join(items))
    if ensemble and len(runs) < 2:
        raise ConfigError(f"--ensemble needs at least two runs; {', '.join(items)} gave {len(runs)} ({runs[0]}): "
                          "pass more runs or leave --ensemble out")
    records = [RunDir(r).metrics() for r in runs]
    configs = [read_config(r) for r in runs]
    rows = [row_for(rec, display_name(r, rec), r.name) | {"seed": (cfg or {}).get("seed")}
            for rec, r, cfg in zip(records, runs, configs)]
    if ensemble:
        names = records[0].get("class_names")
        if any(rec.get("class_names") != names for rec in records):
            raise LitVisionError("--ensemble needs runs with the same classes")
        rows += ensemble_rows(runs, list(names))
    columns = table_columns(rows)
    table = Table(title="comparison (test split unless marked val)")
    for col in columns:
        table.add_column(col, justify="left" if col in ("model", "run") else "right")
    for r in rows:
        table.add_row(*(fmt(r.get(k)) for k in columns))
    console = Console(width=max(Console().width, 170 + 12 * (len(columns) - len(COLUMNS))))  # every column, piped too
    console.print(table)
    csv_path, md_path = write_tables(rows, out, columns)
    console.print(f"written {csv_path} and {md_path}")
    write_seed_tables(runs, configs, rows[:len(runs)], columns, out, console)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    ap = ArgumentParser(prog="python -m lit_vision.compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories or globs (quote globs)")
    ap.add_argument("--out", type=output_file(), default=None,
                    help="output path without suffix (default outputs/compare/compare_<time>)")
    ap.add_argument("--ensemble", action="store_true",
                    help="add mean-probability and majority-vote rows (two runs or more)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    out = args.out or default_output("compare", "compare")
    exit_on_user_error(lambda: compare(args.runs, out, args.ensemble))


if __name__ == "__main__":
    main(sys.argv[1:])
