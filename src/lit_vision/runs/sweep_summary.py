"""One summary per multirun (grids and Optuna), failed jobs listed with their error.

* A failing job writes ``<job dir>/error.json`` (:func:`lit_vision.commands.runner.record_failure`) and returns NaN, so
  the other jobs still run (Optuna records a NaN trial as failed).
* :class:`SweepSummary` is a Hydra callback (``hydra.callbacks.sweep_summary`` in
  ``conf/hydra/default.yaml``): after the last job it reads every job's ``metrics.json`` or
  ``error.json`` and ``.hydra/overrides.yaml`` and writes ``summary.csv``, ``summary.md`` and
  ``summary.png`` (the metric against the swept values) into the sweep dir, and prints the table.
* A sweep over ``seed`` (e.g. ``seed=1,2,3``) also gets mean ± sample std and n per metric of the jobs that differ
  only in their seed (:mod:`lit_vision.runs.seeds`): ``summary_seeds.csv``, a second table in ``summary.md``, and
  ``summary.png`` shows one bar per group at its mean with a std error bar and each seed's job as a dot. n counts
  finished jobs only: failed or missing jobs are listed under ``not finished`` and left out of the means.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from lit_vision.errors import ConfigError, LitVisionError
from lit_vision.runs.paths import timing_cells
from lit_vision.runs.records import ERROR_FILE, HYDRA_DIR, METRICS_FILE, RunDir
from lit_vision.runs.seeds import (
    SeedGroup,
    mean_std,
    numbers,
    read_config,
    read_overrides,
    seed_groups,
    seed_markdown,
    seed_rich_table,
    stat_cell,
    write_seed_csv,
)
from lit_vision.runs.tables import lookup, markdown_rows, metric_cells

log = logging.getLogger(__name__)

#: metric columns of the summary besides the chosen metric (absent ones are left out)
COLUMNS = ("val/acc", "val/loss", "test/acc", "test/f1", "test/auroc", "test/loss")
SEEDS_NOTE = ("\nn counts finished jobs only; failed or missing jobs are listed under *not finished* and left out of "
              "the means. Full-precision means, stds and per-column n: `summary_seeds.csv`.\n")


# --- after the sweep -----------------------------------------------------------------------------
def read_job(job_dir: Path) -> dict[str, Any]:
    """One job: its overrides, saved config (flattened), status (ok | failed | missing), metrics and error."""
    run = RunDir(job_dir)
    job: dict[str, Any] = {"job": run.name, "dir": str(job_dir), "overrides": read_overrides(job_dir),
                           "config": read_config(job_dir), "status": "missing", "metrics": {}, "error": ""}
    if (err := run.error()) is not None:
        job |= {"status": "failed", "error": f"{err.get('type')}: {err.get('message')}"}
    elif run.finished:
        job |= {"status": "ok", "metrics": run.metrics()}
    else:
        job["error"] = f"no {METRICS_FILE} or {ERROR_FILE} (job killed or still running?)"
    return job


def collect_jobs(sweep_dir: Path) -> list[dict[str, Any]]:
    """Every job folder of a sweep (those with ``.hydra/``), in job-number order."""
    dirs = [d for d in Path(sweep_dir).iterdir() if d.is_dir() and (d / HYDRA_DIR).is_dir()]
    dirs.sort(key=lambda d: (0, int(d.name)) if d.name.isdigit() else (1, d.name))
    return [read_job(d) for d in dirs]


def swept_keys(jobs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Override keys whose value differs between jobs (all of them when there is a single job)."""
    keys: list[str] = []
    for job in jobs:
        keys += [k for k in job["overrides"] if k not in keys]
    if len(jobs) <= 1:
        return [k for k in keys if not k.startswith("hydra.")]
    return [k for k in keys if len({job["overrides"].get(k) for job in jobs}) > 1]


def summary_rows(jobs: Sequence[Mapping[str, Any]], metric: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat rows: job, swept values, status, the chosen metric, the usual metrics, epochs, training minutes and
    minutes to each val/acc threshold (:func:`~lit_vision.runs.paths.timing_cells`), error."""
    keys = swept_keys(jobs)
    metric_cols = [metric] + [c for c in COLUMNS if c != metric and any(c in j["metrics"] for j in jobs)]
    timing = list(dict.fromkeys(["epochs", *(k for j in jobs for k in timing_cells(j["metrics"]))]))
    header = ["job", *keys, "status", *metric_cols, *timing, "error"]
    rows = []
    for job in jobs:
        m = job["metrics"]
        row = {"job": job["job"], **{k: job["overrides"].get(k, "") for k in keys}, "status": job["status"],
               **metric_cells(m, metric_cols), "error": job["error"]}
        rows.append(row)
    return header, rows


def number_columns(header: Sequence[str]) -> list[str]:
    """The metric and timing columns of a summary header (between ``status`` and ``error``)."""
    return list(header[header.index("status") + 1:header.index("error")])


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    number = _number(value) if isinstance(value, str) and len(value) > 8 else None
    return f"{number:.4g}" if number is not None else str(value)  # Optuna's 0.0013292918943162175


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(header))
        w.writeheader()
        w.writerows({k: ("" if r.get(k) is None else r.get(k)) for k in header} for r in rows)


def rich_table(header: Sequence[str], rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    table = Table(title=title)
    for k in header:
        table.add_column(k, overflow="fold", max_width=60 if k == "error" else None)
    for r in rows:
        style = "red" if r["status"] != "ok" else None
        table.add_row(*(_fmt(r.get(k)) for k in header), style=style)
    return table


def _number(value: str) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _bars_by_value(ax: Any, rows: Sequence[Mapping[str, Any]], y: list[float], key: str, metric: str) -> None:
    """One swept key: a bar per job, failed jobs greyed out and labelled with their status."""
    bars = ax.bar(range(len(rows)), [0 if math.isnan(v) else v for v in y], color="tab:blue")
    for bar, v, r in zip(bars, y, rows):
        text = r["status"] if r["status"] != "ok" else ("nan" if math.isnan(v) else f"{v:.3f}")
        if r["status"] != "ok":
            bar.set(color="lightgrey", hatch="//")
        ax.annotate(text, (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom",
                    fontsize=9, color="red" if r["status"] != "ok" else "black")
    ax.set_xticks(range(len(rows)), [str(r.get(key, r["job"])) for r in rows])
    ax.set(xlabel=key, ylabel=metric, title=f"{metric} by {key}")
    finite = [v for v in y if not math.isnan(v)]
    ax.set_ylim(0, max(1.0, max(finite) * 1.1) if finite else 1.0)


def _scatter_against(ax: Any, rows: Sequence[Mapping[str, Any]], y: list[float], key: str, metric: str) -> None:
    """The metric against one of several swept keys: numeric axis (log when it spans 100x) or categories."""
    raw = [str(r.get(key, "")) for r in rows]
    nums = [_number(v) for v in raw]
    if all(n is not None for n in nums):
        x = nums
        if min(nums) > 0 and max(nums) / min(nums) >= 100:
            ax.set_xscale("log")
    else:
        cats = list(dict.fromkeys(raw))
        x = [cats.index(v) for v in raw]
        ax.set_xticks(range(len(cats)), cats, rotation=30, ha="right")
    ax.scatter(x, y, c=range(len(rows)), cmap="viridis")
    ax.set(xlabel=key, ylabel=metric)
    ax.grid(alpha=0.3)


def seed_bars(ax: Any, groups: Sequence[SeedGroup], metric: str) -> None:
    """Seed groups: a bar at each group's mean with a one-std error bar (sample std), each finished job a dot,
    labelled with mean ± std, n and how many jobs did not finish (those are not in the bar)."""
    stats = [mean_std(numbers(g.values[metric])) for g in groups]
    means = [0.0 if math.isnan(m) else m for m, _ in stats]
    stds = [0.0 if math.isnan(s) else s for _, s in stats]
    ax.bar(range(len(groups)), means, width=0.6, yerr=stds, capsize=6, color="tab:blue", alpha=0.5, ecolor="black")
    for i, g in enumerate(groups):
        ys = numbers(g.values[metric])
        ax.scatter([i + 0.15] * len(ys), ys, color="black", s=12, zorder=3)  # beside the error bar, not on it
        text = f"{stat_cell(g.values[metric]) or 'none'}\nn={g.n}" + (
            f", {len(g.not_finished)} not finished" if g.not_finished else "")
        ax.annotate(text, (i, means[i] + stds[i]), ha="center", va="bottom", fontsize=8,
                    color="red" if g.not_finished else "black")
    ax.set_xticks(range(len(groups)), [g.label or "all jobs" for g in groups], rotation=15 if len(groups) > 1 else 0,
                  ha="right" if len(groups) > 1 else "center")
    ax.set(ylabel=metric, title=f"{metric}: mean ± std over seeds", xlim=(-0.7, len(groups) - 0.3))
    finite = [m + s for m, s in zip(means, stds)] + [y for g in groups for y in numbers(g.values[metric])]
    ax.set_ylim(0, max(1.0, max(finite) * 1.15) if finite else 1.0)


def plot_summary(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metric: str, path: Path,
                 groups: Sequence[SeedGroup] = ()) -> Path | None:
    """Seed groups: their means with error bars. Otherwise one swept key: a bar per value (failed jobs marked);
    several keys: the metric against each key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return None
    y = [v if isinstance(v, (int, float)) and math.isfinite(v) else math.nan for v in (r.get(metric) for r in rows)]
    if groups:
        fig, ax = plt.subplots(figsize=(max(4.5, 1.8 * len(groups) + 1.5), 4.0))
        seed_bars(ax, groups, metric)
    elif len(keys) <= 1:
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(rows) + 1.5), 3.8))
        _bars_by_value(ax, rows, y, keys[0] if keys else "job", metric)
    else:
        fig, axes = plt.subplots(1, len(keys), figsize=(3.8 * len(keys), 3.6), squeeze=False)
        for ax, key in zip(axes[0], keys):
            _scatter_against(ax, rows, y, key, metric)
        fig.suptitle(f"{metric} against the swept values (colour = job order)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_sweep(sweep_dir: Path, jobs: Sequence[Mapping[str, Any]], metric: str) -> None:
    """The ``sweeps`` command's arguments, before anything is written: a folder with job folders (exit code 1 when
    not: a wrong path) and a ``metric`` some finished job recorded (a :class:`ConfigError` naming those there are)."""
    if not jobs:
        hint = (" (it is a single run; compare runs with python -m lit_vision.compare)"
                if (sweep_dir / HYDRA_DIR).is_dir() else "")
        raise LitVisionError(f"{sweep_dir} holds no job folders (<n>/{HYDRA_DIR}/){hint}; pass a sweep dir, e.g. "
                             "outputs/<task>/multiruns/<time>")
    finished = [job["metrics"] for job in jobs if job["status"] == "ok"]
    if finished and all(lookup(record, metric) is None for record in finished):
        names = sorted(k for k, v in finished[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        raise ConfigError(f"metric={metric!r} is in no finished job's {METRICS_FILE} in {sweep_dir}; use one of "
                          f"{', '.join(names)}")


def write_summary(sweep_dir: Path, metric: str, print_table: bool = True, check: bool = False) -> dict[str, Any]:
    """Write ``summary.csv``, ``summary.md`` and ``summary.png`` into ``sweep_dir``; return what was written. With
    ``check`` (the ``sweeps`` command) the folder and metric are checked first (:func:`check_sweep`); the Hydra
    callback writes what it can."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise LitVisionError(f"{sweep_dir} is not a directory; pass a sweep dir, e.g. outputs/<task>/multiruns/<time>")
    jobs = collect_jobs(sweep_dir)
    if check:
        check_sweep(sweep_dir, jobs, metric)
    header, rows = summary_rows(jobs, metric)
    keys = swept_keys(jobs)
    write_csv(sweep_dir / "summary.csv", header, rows)
    ok = [r for r in rows if r["status"] == "ok" and isinstance(r.get(metric), (int, float))
          and math.isfinite(r[metric])]
    best = max(ok, key=lambda r: r[metric]) if ok else None
    lines = [f"# sweep summary: {metric}", "", f"sweep dir: `{sweep_dir}`", "",
             f"{len(rows)} jobs, {len(ok)} ok, {len(rows) - len(ok)} failed or without {metric}", ""]
    if best:
        lines += [f"best {metric}: {best[metric]:.4f} (job {best['job']}: "
                  + ", ".join(f"{k}={_fmt(best[k])}" for k in keys) + ")", ""]
    groups = summarize_seeds(jobs, rows, header) if "seed" in keys else []
    seeds_md = write_seed_summary(sweep_dir, groups, number_columns(header))
    table = markdown_rows(header, rows, _fmt)
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n" + table + "\n" + seeds_md)
    plot = plot_summary(rows, keys, metric, sweep_dir / "summary.png", groups)
    if print_table:
        console = Console(width=200)
        console.print(rich_table(header, rows, title=f"sweep summary ({metric}): {sweep_dir}"))
        if groups:
            console.print(seed_rich_table(groups, number_columns(header)))
    return {"header": header, "rows": rows, "best": best, "plot": plot, "seed_groups": groups}


def summarize_seeds(jobs: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]],
                    header: Sequence[str]) -> list[SeedGroup]:
    """The sweep's jobs that differ only in their seed, grouped (groups of at least two jobs)."""
    return seed_groups(rows, [j["config"] for j in jobs], [j["overrides"] for j in jobs], number_columns(header),
                       status=[j["status"] for j in jobs], names=[f"job {j['job']}" for j in jobs])


def write_seed_summary(sweep_dir: Path, groups: Sequence[SeedGroup], columns: Sequence[str]) -> str:
    """``summary_seeds.csv`` (removed when there are no seed groups, so a rebuilt summary leaves none stale) and
    the markdown section for ``summary.md`` (empty without groups)."""
    path = sweep_dir / "summary_seeds.csv"
    if not groups:
        path.unlink(missing_ok=True)
        return ""
    write_seed_csv(path, groups, columns)
    return "\n" + seed_markdown(groups, columns) + SEEDS_NOTE


class SweepSummary(Callback):
    """Hydra callback: the summary of a multirun, written to the sweep dir when the last job is done.

    ``metric``: the column plotted and ranked (default ``${optimized_metric}``, falling back to test/acc).
    """

    def __init__(self, metric: str | None = None) -> None:
        self.metric = metric

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            log.warning("sweep dir %s not found; no summary written", sweep_dir)
            return
        metric = self.metric or config.get("optimized_metric") or "test/acc"
        try:
            written = write_summary(sweep_dir, metric)
        except Exception:  # a summary problem must not hide the jobs' own results
            log.exception("could not write the sweep summary in %s", sweep_dir)
            return
        log.info("sweep summary: %s/summary.{csv,md,png} (%d jobs)", sweep_dir, len(written["rows"]))
