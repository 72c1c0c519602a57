"""What a search leaves to look at, in ``<tune dir>/``: ``summary.md`` (best trial and its run dir, every trial's
parameters, value, state and minutes, parameter importances), ``trials.csv`` and ``plots/`` (optimisation history,
parallel coordinates, slice, importances: Optuna's matplotlib plots)."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import optuna

from lit_vision.runs.markdown import markdown_table
from lit_vision.tuning.study import trial_overview

log = logging.getLogger(__name__)


def importances(study: optuna.Study) -> dict[str, float]:
    """fANOVA importances of the parameters over the completed trials ({} while there are too few to say)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2 or len({t.value for t in complete}) < 2:
        return {}
    try:
        return dict(optuna.importance.get_param_importances(study))
    except (RuntimeError, ValueError) as exc:  # e.g. a parameter sampled in one trial only
        log.info("parameter importances not computed: %s", exc)
        return {}


def _relative(path: str | None, tune_dir: Path) -> str:
    if not path:
        return "–"
    try:
        return str(Path(path).relative_to(tune_dir))
    except ValueError:
        return path


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def write_report(study: optuna.Study, tune_dir: Path, metric: str, plots: bool = True) -> Path:
    """Write the summary, the trial table and the plots; return the summary's path."""
    rows = trial_overview(study)
    keys = sorted({k for r in rows for k in r["params"]})
    with (tune_dir / "trials.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["trial", "state", metric, *keys, "minutes", "last_epoch", "run_dir", "worker", "error"])
        for r in rows:
            writer.writerow([r["trial"], r["state"], r["value"], *(r["params"].get(k) for k in keys), r["minutes"],
                             r["last_epoch"], r["run_dir"], r["worker"], r["error"]])
    lines = [f"# Study `{study.study_name}` ({study.direction.name.lower()} {metric})", ""]
    states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    minutes = sum(r["minutes"] or 0 for r in rows)
    lines.append(", ".join(f"{n} {s.lower()}" for s, n in states.items() if n) + f"; {minutes:.1f} trial-minutes")
    try:
        best = study.best_trial
        lines += ["", f"**Best: trial {best.number}**, {metric} = {best.value:.4f}, "
                      + ", ".join(f"`{k}={_cell(v)}`" for k, v in best.params.items())
                  + f" — run dir `{_relative(best.user_attrs.get('run_dir'), tune_dir)}`"]
    except ValueError:
        lines += ["", "No completed trial yet."]
    lines += ["", markdown_table(["trial", "state", metric, *keys, "min", "epochs", "error"],
                                 [[str(r["trial"]), r["state"].lower(), _cell(r["value"]),
                                   *(_cell(r["params"].get(k)) for k in keys), _cell(r["minutes"]),
                                   _cell(None if r["last_epoch"] is None else r["last_epoch"] + 1),
                                   r["error"] or ""] for r in rows])]
    weights = importances(study)
    if weights:
        lines += ["", "Parameter importances (fANOVA over the completed trials):", "",
                  markdown_table(["parameter", "importance"], [[k, f"{v:.3f}"] for k, v in weights.items()])]
    if plots:
        lines += ["", *(f"![{name}](plots/{name}.png)" for name in write_plots(study, tune_dir / "plots", weights))]
    summary = tune_dir / "summary.md"
    summary.write_text("\n".join(lines) + "\n")
    return summary


def write_plots(study: optuna.Study, folder: Path, weights: dict[str, float]) -> list[str]:
    """Optuna's matplotlib plots as PNGs; returns the names written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as oplt

    folder.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    makers = {"history": oplt.plot_optimization_history}
    if complete:
        makers |= {"parallel_coordinates": oplt.plot_parallel_coordinate, "slice": oplt.plot_slice}
    if weights:
        makers["importances"] = oplt.plot_param_importances
    written = []
    for name, make in makers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            ax = make(study)
        figure = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
        figure.savefig(folder / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(name)
    return written


__all__ = ["importances", "write_report"]
