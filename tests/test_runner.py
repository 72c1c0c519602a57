"""One runner for every Hydra command: same validation, seeding, exit codes and multirun failure records."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from lit_vision.commands import baseline, evaluate, inspect, train, xgb
from lit_vision.commands.runner import EXIT_CONFIG, EXIT_OTHER, execute, exit_code
from lit_vision.errors import ConfigError, DataNotFoundError

COMMANDS = {"train": train.main, "evaluate": evaluate.main, "xgb": xgb.main, "baseline": baseline.main,
            "inspect": inspect.main}
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]


def invoke(main: Callable[[], object], args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """Run a command's ``main()`` in this process as ``python -m lit_vision.<cmd> *args``; return its exit code."""
    monkeypatch.setattr(sys, "argv", ["lit_vision", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_exit_codes_by_error_kind() -> None:
    assert exit_code(ConfigError("x")) == EXIT_CONFIG == 2
    assert exit_code(DataNotFoundError("x")) == EXIT_OTHER == 1


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_an_invalid_value_with_exit_2(command: str, tmp_path: Path, monkeypatch,
                                                            capsys) -> None:
    args = ["data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}"]
    if command in ("evaluate", "xgb"):
        args.append(f"ckpt_path={tmp_path / 'none.ckpt'}")
    assert invoke(COMMANDS[command], args, monkeypatch) == 2
    out = capsys.readouterr()
    assert "data.batch_size=0 must be an integer >= 1" in out.out + out.err and "Traceback" not in out.out + out.err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_reports_missing_data_with_exit_1(command: str, tmp_path: Path, monkeypatch,
                                                        capsys, cnn_run: Path) -> None:
    args = ["data=image_folder", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}"]
    if command in ("evaluate", "xgb"):
        args.append(f"ckpt_path={cnn_run / 'checkpoints' / 'best.ckpt'}")
    assert invoke(COMMANDS[command], args, monkeypatch) == 1
    out = capsys.readouterr()
    assert f"image folder {tmp_path / 'nowhere' / 'train'} does not exist" in out.out + out.err


@pytest.mark.parametrize("override,expected", [
    ("data=no_such_data", "no_such_data"),          # unknown config group option
    ("model.optimizer.lrr=0.1", "lrr"),             # key that does not exist (typo)
    ("trainer.max_epochs=[", "trainer.max_epochs"),  # unparsable override
    ("logger=null", "logger"),                      # Hydra's ValueError for a null group choice
])
def test_bad_command_line_is_a_config_error_exit_2(override: str, expected: str, tmp_path: Path, monkeypatch,
                                                   capsys) -> None:
    assert invoke(train.main, [override, f"hydra.run.dir={tmp_path / 'run'}"], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("config error:") and expected in err and "Traceback" not in err


def test_runner_seeds_every_command(make_cfg) -> None:
    """Two runs of a command whose result depends on the global RNG agree only because the runner seeds."""
    import torch

    def draw(cfg) -> dict[str, float]:
        return {"val/acc": float(torch.rand(1))}

    cfg = make_cfg("optimized_metric=val/acc")
    assert execute(draw, cfg) == execute(draw, cfg)


def test_runner_returns_the_optimized_metric(make_cfg) -> None:
    cfg = make_cfg("optimized_metric=val/f1")
    assert execute(lambda _: {"val/acc": 0.5, "val/f1": 0.25}, cfg) == 0.25


@pytest.mark.parametrize("command,args", [
    ("baseline", ["data=digits", "baseline.pca_components=8", "baseline.classifier=rf,bogus",
                  "+baseline.params.n_estimators=5"]),
    ("xgb", ["xgb.n_estimators=5", "xgb.early_stopping_rounds=2", "xgb.max_depth=2,-3"]),
])
def test_failing_multirun_job_writes_error_json_and_the_sweep_goes_on(command: str, args: list[str],
                                                                      tmp_path: Path, monkeypatch,
                                                                      cnn_run: Path, pets_root: Path) -> None:
    sweep = tmp_path / "sweep"
    if command == "xgb":
        args = [*args, f"ckpt_path={cnn_run / 'checkpoints' / 'best.ckpt'}", "data=image_folder",
                f"data.root={pets_root}", "data.batch_size=8", "accelerator=cpu"]
    assert invoke(COMMANDS[command], ["-m", *args, f"hydra.sweep.dir={sweep}"], monkeypatch) == 0
    ok, failed = sweep / "0", sweep / "1"
    assert (ok / "metrics.json").is_file() and not (ok / "error.json").exists()
    error = json.loads((failed / "error.json").read_text())
    assert error["type"] in ("ConfigError", "XGBoostError", "ValueError") and error["traceback"]
    with open(sweep / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[1]["error"].startswith(error["type"])
    assert not math.isnan(float(rows[0]["val/acc"]))


@pytest.mark.parametrize("module,args,message", [
    ("lit_vision.predict", ["-m", "missing.ckpt", "."], "--model missing.ckpt: no such file or folder"),
    ("lit_vision.compare", ["no_such_run"], "no_such_run: no metrics.json"),
    ("lit_vision.sweeps", ["no_such_sweep"], "no_such_sweep is not a directory"),
    ("lit_vision.export_backbone", ["missing.ckpt", "out.safetensors"], "checkpoint missing.ckpt does not exist"),
])
def test_argparse_commands_report_user_errors_like_the_hydra_ones(module: str, args: list[str], message: str,
                                                                  tmp_path: Path) -> None:
    import subprocess

    res = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 1 and res.stderr.startswith("error: ") and message in res.stderr
    assert "Traceback" not in res.stderr
