"""``logger=mlflow`` against a real ``mlflow server`` (SQLite backend, served artifact store) started here: a run
with its parameters, metrics and report artifacts; tune trials as children of one study run; a server that is
down costs one warning line and a few seconds, and the run's own files are written as usual."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lit_vision.deploy.http_client import free_port

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=dense", "data=digits", "trainer.max_epochs=2", "report.plots=false", "accelerator=cpu",
        "~callbacks.progress_bar", "~callbacks.model_summary", "logger=mlflow",
        "logger.mlflow.artifact_location=null"]  # null: the server keeps the artifacts (its artifact store)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    mlflow_cli = Path(sys.executable).parent / "mlflow"
    if not mlflow_cli.exists() or shutil.which("uvicorn", path=str(mlflow_cli.parent)) is None:
        pytest.skip("the MLflow server needs the full mlflow package (pip install '.[test]' or '.[mlflow]')")
    root = tmp_path_factory.mktemp("mlflow_server")
    port = free_port()
    proc = subprocess.Popen([str(mlflow_cli), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
                             "--port", str(port), "--workers", "1"],
                            stdout=(root / "server.log").open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    from lit_vision.runs.tracking import server_problem

    deadline = time.monotonic() + 120
    while server_problem(url, timeout_s=2) is not None:
        assert proc.poll() is None and time.monotonic() < deadline, (root / "server.log").read_text()[-3000:]
        time.sleep(1)
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def runs_of(url: str, experiment: str) -> list:
    import mlflow

    client = mlflow.MlflowClient(url)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def lit_vision(command: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"lit_vision.{command}", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def test_a_run_is_tracked_on_the_server_with_its_report(server: str, tmp_path: Path) -> None:
    import mlflow

    res = lit_vision("train", *TINY, f"logger.mlflow.tracking_uri={server}", "task_name=served",
                     f"paths.log_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    (run,) = runs_of(server, "served")
    assert run.info.status == "FINISHED" and run.data.params["model.net.name"] == "mlp"
    assert 0 < run.data.metrics["test/acc"] <= 1
    artifacts = {a.path for a in mlflow.MlflowClient(server).list_artifacts(run.info.run_id)}
    assert {"metrics.json", "history.csv"} <= artifacts  # uploaded through the server, not written beside the run


def test_tune_trials_are_children_of_one_study_run(server: str, tmp_path: Path) -> None:
    res = lit_vision("tune", "hparams_search=cnn_optuna", "model=cnn", *TINY[1:], "tune.n_trials=2",
                     f"logger.mlflow.tracking_uri={server}", f"paths.log_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-3000:]
    runs = {r.info.run_name: r for r in runs_of(server, "train")}
    parent = runs["study cnn_optuna"]
    assert {"000", "001"} <= set(runs)
    assert {runs[n].data.tags["mlflow.parentRunId"] for n in ("000", "001")} == {parent.info.run_id}
    assert parent.info.status == "FINISHED"


def test_a_server_that_is_down_is_one_warning_and_the_run_goes_on(tmp_path: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    res = lit_vision("train", *TINY, f"logger.mlflow.tracking_uri={down}", f"paths.log_dir={tmp_path}",
                     timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert time.monotonic() - started < 120  # MLflow's own client retries for minutes
    warnings = [line for line in (res.stderr + res.stdout).splitlines() if "does not answer" in line]
    assert len(warnings) == 1 and down in warnings[0]
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    assert (run_dir / "metrics.csv").is_file() and (run_dir / "metrics.json").is_file()
