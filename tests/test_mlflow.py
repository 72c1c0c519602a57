"""logger=mlflow: the run in a SQLite store with its config as parameters, its report as artifacts, sweep jobs under
one parent run, failures visible; a clear error without MLflow installed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lit_vision.config import validate_config
from lit_vision.errors import ConfigError
from lit_vision.runs.tracking import MAX_PARAM_VALUE, RUN_FILE, TRUNCATED, flat_params

QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary"]


def mlflow_client(run_dir: Path):
    mlflow = pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra (pip install '.[mlflow]')")
    known = json.loads((run_dir / RUN_FILE).read_text())
    return mlflow.MlflowClient(known["tracking_uri"]), known["run_id"]


def test_run_logs_config_metrics_and_report(make_cfg):
    pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra (pip install '.[mlflow]')")
    from lit_vision.commands.runner import execute
    from lit_vision.commands.train import run

    cfg = make_cfg("logger=mlflow", "trainer.max_epochs=1", "model.optimizer.lr=0.003", "report.plots=true", *QUIET)
    execute(run, cfg)
    out = Path(cfg.paths.output_dir)
    client, run_id = mlflow_client(out)
    assert client.tracking_uri == f"sqlite:///{cfg.paths.log_dir}/mlflow.db"
    found = client.get_run(run_id)
    assert found.info.status == "FINISHED"
    assert found.data.params["model.optimizer.lr"] == "0.003" and found.data.params["data.name"] == "digits"
    assert found.data.tags["lit_vision.run_dir"] == str(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert found.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    assert "val/acc" in found.data.metrics
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")]  # per-epoch curves, not only finals
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"metrics.json", "history.csv", "plots"} <= artifacts
    assert "plots/confusion_matrix.png" in {a.path for a in client.list_artifacts(run_id, "plots")}
    assert found.info.artifact_uri.startswith(str(Path(cfg.paths.log_dir) / "mlartifacts"))


def test_sweep_jobs_share_one_parent_and_a_failed_job_shows(tmp_path):
    pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra (pip install '.[mlflow]')")
    from test_sweeps import TINY, cli

    from lit_vision.data.synthetic import write_image_folder

    good, empty = tmp_path / "pets", tmp_path / "empty"
    for split, seed in (("train", 0), ("test", 1)):
        write_image_folder(good / split, ["cat", "dog"], 8, size=8, seed=seed)
    empty.mkdir()
    sweep = tmp_path / "sweep"
    # jobs (the last override varies fastest): 0 trains; 2 starts and fails reading its data (an empty folder);
    # 1 and 3 are refused up front (a negative lr), so they make no MLflow run
    tiny = [o for o in TINY if not o.startswith("data=")] + ["data=image_folder", "data.batch_size=4"]
    proc = cli("-m", "logger=mlflow", *tiny, f"data.root={good},{empty}", "model.optimizer.lr=0.01,-1",
               f"hydra.sweep.dir={sweep}", f"paths.log_dir={tmp_path / 'outputs'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client, ok_id = mlflow_client(sweep / "0")
    _, failed_id = mlflow_client(sweep / "2")
    ok, failed = client.get_run(ok_id), client.get_run(failed_id)
    parent_id = ok.data.tags["mlflow.parentRunId"]
    assert failed.data.tags["mlflow.parentRunId"] == parent_id != ok_id
    parent = client.get_run(parent_id)
    assert parent.data.tags["lit_vision.sweep_dir"] == str(sweep.resolve())
    assert parent.info.run_name == "sweep sweep"
    assert ok.info.status == "FINISHED" and failed.info.status == "FAILED"
    assert failed.data.tags["lit_vision.error"].startswith("DataNotFoundError")
    assert ok.info.run_name.startswith("0: ") and "model.optimizer.lr=0.01" in ok.info.run_name
    assert "config.yaml" in {Path(a.path).name for a in client.list_artifacts(ok_id, "config")}
    assert "error.txt" in {a.path for a in client.list_artifacts(failed_id)}
    runs = client.search_runs([ok.info.experiment_id])
    assert {r.info.run_id for r in runs} == {parent_id, ok_id, failed_id}  # nothing for the refused jobs
    for job in ("1", "3"):
        error = json.loads((sweep / job / "error.json").read_text())
        assert error["type"] == "ConfigError" and "model.optimizer.lr=-1" in error["message"]
        assert not (sweep / job / RUN_FILE).exists()


def test_a_config_refused_up_front_makes_no_mlflow_run(make_cfg):
    mlflow = pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra (pip install '.[mlflow]')")
    from lit_vision.commands.runner import execute
    from lit_vision.commands.train import run

    cfg = make_cfg("logger=mlflow", "model.optimizer.lr=-1", *QUIET)
    with pytest.raises(SystemExit) as exit_info:
        execute(run, cfg)
    assert exit_info.value.code == 2
    store = Path(cfg.paths.log_dir) / "mlflow.db"
    runs = mlflow.MlflowClient(f"sqlite:///{store}").search_runs(["0"]) if store.exists() else []
    assert runs == [] and not (Path(cfg.paths.output_dir) / RUN_FILE).exists()


def test_missing_mlflow_is_a_config_error_naming_the_extra(make_cfg, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # importlib.util.find_spec("mlflow") is now None
    with pytest.raises(ConfigError, match=r"pip install 'lit_vision\[mlflow\]'"):
        validate_config(make_cfg("logger=mlflow"))
    validate_config(make_cfg("logger=csv"))  # the default needs nothing extra


def test_params_are_flat_with_long_values_truncated():
    cfg = OmegaConf.create({"model": {"optimizer": {"lr": 0.001, "name": "adam"}, "sizes": [1, 2], "flag": None},
                            "data": {"mapping": {"classes": {"T-shirt (top)": 0}}, "note": "x" * 7000},
                            "ref": "${model.optimizer.lr}", "hydra": {"run": {"dir": "somewhere"}}})
    params = flat_params(cfg)
    assert params["model.optimizer.lr"] == "0.001" and params["model.optimizer.name"] == "adam"
    assert params["model.sizes"] == "[1, 2]" and params["model.flag"] == "null" and params["ref"] == "0.001"
    assert "data.mapping.classes.T-shirt _top_" in params  # characters MLflow refuses in keys become _
    assert len(params["data.note"]) == MAX_PARAM_VALUE and params["data.note"].endswith(TRUNCATED)
    assert not any(key.startswith("hydra") for key in params)


def test_resume_continues_the_same_mlflow_run(make_cfg):
    pytest.importorskip("mlflow", reason="logger=mlflow needs the mlflow extra (pip install '.[mlflow]')")
    from lit_vision.commands.train import run

    base = ["logger=mlflow", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1", *QUIET]
    first = make_cfg(*base, "trainer.max_epochs=1")
    run(first)
    out = Path(first.paths.output_dir)
    client, run_id = mlflow_client(out)
    run(make_cfg(*base, "trainer.max_epochs=2", f"resume={out}"))
    assert mlflow_client(out)[1] == run_id  # mlflow.json still names the first run
    assert len(client.get_metric_history(run_id, "train/loss")) == 2  # epoch 0 from the first fit, 1 from the resume
    assert client.get_run(run_id).data.params["trainer.max_epochs"] == "1"  # MLflow keeps a parameter's first value
