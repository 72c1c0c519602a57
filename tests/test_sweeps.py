"""Multirun sweeps through the real CLI: grid summary, a failing job that does not stop the sweep, Optuna."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT as PROJECT_ROOT

from lit_vision.commands.runner import record_failure as job_failed
from lit_vision.commands.sweeps import main as summary_cli
from lit_vision.runs.sweep_summary import write_summary

# one epoch of 3 digits batches, no plots: each job takes seconds
TINY = ["data=digits", "model=cnn", "accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1", "report.plots=false", "~callbacks.progress_bar", "~callbacks.model_summary"]


def cli(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, "-m", "lit_vision.train", *args], check=False, cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_summary(sweep: Path) -> list[dict[str, str]]:
    with open(sweep / "summary.csv") as f:
        return list(csv.DictReader(f))


# --- summary from job folders (no training) ------------------------------------------------------
def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None = None,
             error: Exception | None = None, config: dict | None = None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if config is not None:
        (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if error is not None:
        assert math.isnan(job_failed(job, error))


def test_summary_ranks_jobs_and_reports_errors(tmp_path):
    sweep = tmp_path / "sweep"
    fake_job(sweep, 0, ["experiment=x", "model.dropout=0.1"], {"test/acc": 0.91, "val/acc": 0.90, "epochs_trained": 9})
    fake_job(sweep, 1, ["experiment=x", "model.dropout=0.2"], {"test/acc": 0.93, "val/acc": 0.92, "epochs_trained": 9})
    fake_job(sweep, 2, ["experiment=x", "model.dropout=0.5"], error=RuntimeError("loss became nan"))
    fake_job(sweep, 10, ["experiment=x", "model.dropout=0.9"])  # killed: neither metrics nor error
    out = write_summary(sweep, "test/acc", print_table=False)
    assert out["best"]["job"] == "1" and out["best"]["model.dropout"] == "0.2"
    rows = read_summary(sweep)
    assert [r["job"] for r in rows] == ["0", "1", "2", "10"]  # numeric job order
    assert "experiment" not in rows[0]  # not swept: same in every job
    assert [r["status"] for r in rows] == ["ok", "ok", "failed", "missing"]
    assert rows[2]["error"] == "RuntimeError: loss became nan" and rows[2]["test/acc"] == ""
    assert json.loads((sweep / "2" / "error.json").read_text())["traceback"]
    md = (sweep / "summary.md").read_text()
    assert "best test/acc: 0.9300" in md and "| 2 | 0.5 | failed |" in md
    assert (sweep / "summary.png").stat().st_size > 5_000
    assert not (sweep / "summary_seeds.csv").exists() and "over seeds" not in md  # no seed swept
    summary_cli([str(sweep), "val/acc"])  # python -m lit_vision.sweeps <dir> <metric>: rebuild, ranked by val/acc
    assert "best val/acc: 0.9200" in (sweep / "summary.md").read_text()


def seed_job(sweep: Path, num: int, seed: int, lr: float, val_acc: float | None) -> None:
    """A job of a ``seed=… model.optimizer.lr=…`` grid; ``val_acc=None``: the job failed."""
    metrics = None if val_acc is None else {"val/acc": val_acc, "test/acc": val_acc - 0.05, "epochs_trained": 4,
                                            "train_seconds": 120.0, "time_to_val_acc": {"0.8": None}}
    fake_job(sweep, num, [f"seed={seed}", f"model.optimizer.lr={lr}"], metrics,
             error=RuntimeError("loss became nan") if val_acc is None else None,
             config={"task_name": "train", "seed": seed, "model": {"optimizer": {"lr": lr}}})


def test_seed_sweep_groups_jobs_and_leaves_failed_ones_out(tmp_path):
    sweep = tmp_path / "seeds"
    for num, (seed, lr, acc) in enumerate([(1, 0.01, 0.80), (2, 0.01, 0.90), (3, 0.01, None),
                                           (1, 0.1, 0.60), (2, 0.1, 0.70), (3, 0.1, 0.65)]):
        seed_job(sweep, num, seed, lr, acc)
    out = write_summary(sweep, "val/acc", print_table=False)
    with open(sweep / "summary_seeds.csv") as f:
        groups = list(csv.DictReader(f))
    assert [g["group"] for g in groups] == ["train model.optimizer.lr=0.01", "train model.optimizer.lr=0.1"]
    assert [g["n"] for g in groups] == ["2", "3"]  # the failed job is not counted ...
    assert groups[0]["not finished"] == "job 2 (seed 3: failed)"  # ... but listed
    assert float(groups[0]["val/acc mean"]) == pytest.approx(0.85)
    assert float(groups[0]["val/acc std"]) == pytest.approx(0.0707106781)  # sample std of 0.8, 0.9
    assert (float(groups[1]["val/acc mean"]) == pytest.approx(0.65)
            and float(groups[1]["val/acc std"]) == pytest.approx(0.05))
    assert groups[1]["min to val/acc 0.8 n"] == "0" and float(groups[1]["train min mean"]) == 2.0
    md = (sweep / "summary.md").read_text()
    assert "| train model.optimizer.lr=0.01 | 2 | 1, 2 | job 2 (seed 3: failed) | 0.8500 ± 0.0707 |" in md
    assert "0 of 3 reached" in md and "n counts finished jobs only" in md
    assert (sweep / "summary.png").stat().st_size > 5_000
    assert len(out["seed_groups"]) == 2


def test_seed_plot_draws_one_std_error_bars(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.container import ErrorbarContainer

    from lit_vision.runs.sweep_summary import seed_bars

    sweep = tmp_path / "seeds"
    for num, (seed, acc) in enumerate([(1, 0.80), (2, 0.90), (3, 0.85)]):
        seed_job(sweep, num, seed, 0.01, acc)
    groups = write_summary(sweep, "val/acc", print_table=False)["seed_groups"]
    fig, ax = plt.subplots()
    seed_bars(ax, groups, "val/acc")
    (bars,) = [c for c in ax.containers if not isinstance(c, ErrorbarContainer)]
    (errorbar,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    (segment,) = errorbar.lines[2][0].get_segments()
    assert bars[0].get_height() == pytest.approx(0.85)
    assert segment[:, 1] == pytest.approx([0.80, 0.90])  # mean ± sample std (0.05)
    plt.close(fig)


# --- the real CLI ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_grid_multirun_writes_one_summary(tmp_path):
    sweep = tmp_path / "grid"
    proc = cli("-m", *TINY, "model.optimizer.lr=0.01,0.001", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_summary(sweep)
    assert [r["model.optimizer.lr"] for r in rows] == ["0.01", "0.001"]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    for row in rows:  # the summary carries each job's own metrics.json values
        metrics = json.loads((sweep / row["job"] / "metrics.json").read_text())
        assert float(row["val/acc"]) == pytest.approx(metrics["val/acc"])
        assert float(row["test/acc"]) == pytest.approx(metrics["test/acc"])
    assert "sweep summary (val/acc)" in proc.stdout
    assert (sweep / "summary.md").read_text().count("| ok |") == 2
    assert (sweep / "summary.png").stat().st_size > 5_000


@pytest.mark.slow
def test_seed_multirun_writes_mean_and_std(tmp_path):
    sweep = tmp_path / "seeds"
    proc = cli("-m", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [(r["seed"], r["status"]) for r in read_summary(sweep)] == [("1", "ok"), ("2", "ok")]
    with open(sweep / "summary_seeds.csv") as f:
        (group,) = list(csv.DictReader(f))
    assert group["n"] == "2" and group["seeds"] == "1, 2"
    jobs = [json.loads((sweep / job / "metrics.json").read_text()) for job in ("0", "1")]
    for column, key, scale in (("val/acc", "val/acc", 1), ("test/acc", "test/acc", 1),
                               ("train min", "train_seconds", 60)):
        values = [j[key] / scale for j in jobs]
        assert float(group[f"{column} mean"]) == pytest.approx(statistics.fmean(values))
        assert float(group[f"{column} std"]) == pytest.approx(statistics.stdev(values))
    assert "mean ± std over seeds" in proc.stdout and "## mean ± std over seeds" in (sweep / "summary.md").read_text()
    assert (sweep / "summary.png").stat().st_size > 5_000


@pytest.mark.slow
def test_failing_job_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "failing"
    # job 0 fails up front (negative lr), job 1 must still run
    proc = cli("-m", *TINY, "model.optimizer.lr=-1,0.001", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read_summary(sweep)
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert rows[0]["error"].startswith("ConfigError: model.optimizer.lr=-1")
    assert json.loads((sweep / "0" / "error.json").read_text())["type"] == "ConfigError"
    assert float(rows[1]["test/acc"]) > 0
    assert "failed" in (sweep / "summary.md").read_text()


@pytest.mark.slow
def test_single_run_config_error_still_exits_2(tmp_path):
    proc = cli(*TINY, "model.optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert "model.optimizer.lr=-1" in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "error.json").exists()
