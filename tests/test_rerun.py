"""Reruns are exact: the same command twice, and python -m lit_vision.rerun of a finished run dir, give identical test
metrics and predictions on CPU; a run whose saved config no longer matches today's defaults is refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from omegaconf import OmegaConf

from lit_vision.commands import rerun

# the default digits data and small CNN, 2 epochs, the default seed, on the CPU
COMMAND = ["data=digits", "model=cnn", "accelerator=cpu", "trainer.max_epochs=2", "report.plots=false",
           "~callbacks.progress_bar", "~callbacks.model_summary"]


def cli(module: str, *args: str, root: Path) -> subprocess.CompletedProcess:
    """``python -m lit_vision.<module>`` with the project root (outputs/) under ``root``."""
    env = os.environ | {"CUDA_VISIBLE_DEVICES": "", "LIT_VISION_ROOT": str(root)}
    return subprocess.run([sys.executable, "-m", f"lit_vision.{module}", *args], check=False, cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_results(run_dir: Path) -> tuple[dict[str, float], str]:
    """The run's ``test/*`` metrics and its ``predictions.csv`` (per-image probabilities to 6 decimals)."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in metrics.items() if k.startswith("test/")}, (run_dir / "predictions.csv").read_text()


test_results.__test__ = False  # a helper, not a test


def run_dirs(root: Path) -> set[Path]:
    return set((root / "outputs" / "train" / "runs").iterdir())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished run, made by the command line in its default (timestamped) run dir."""
    root = tmp_path_factory.mktemp("rerun_root")
    proc = cli("train", *COMMAND, root=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = run_dirs(root)
    return run_dir


def test_the_same_command_twice_gives_identical_test_results(trained):
    second = trained.parents[3] / "second"
    proc = cli("train", *COMMAND, f"hydra.run.dir={second}", root=trained.parents[3])
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics, predictions = test_results(second)
    assert metrics["test/acc"] > 0.5 and len(metrics) >= 5
    assert (metrics, predictions) == test_results(trained)  # exact: every metric and every probability


def test_rerun_of_a_run_dir_gives_identical_test_results_in_a_new_dir(trained):
    root = trained.parents[3]
    before = run_dirs(root)
    proc = cli("rerun", str(trained), root=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (again,) = run_dirs(root) - before  # a new timestamped dir; the old one is left alone
    assert test_results(again) == test_results(trained)
    assert (again / ".hydra" / "overrides.yaml").read_text() == (trained / ".hydra" / "overrides.yaml").read_text()
    assert f"python -m lit_vision.train {' '.join(COMMAND)}" in proc.stderr


# --- refusal and override handling, without training ---------------------------------------------------
def fake_run(path: Path, overrides: list[str], tamper: dict[str, object] | None = None) -> Path:
    """A run dir's ``.hydra/`` as the train command writes it, its config optionally edited afterwards."""
    cfg = OmegaConf.create(rerun.compose("train", overrides))
    for key, value in (tamper or {}).items():
        OmegaConf.update(cfg, key, value)
    (path / ".hydra").mkdir(parents=True)
    OmegaConf.save(cfg, path / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), path / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": {"job": {"config_name": "train"}}}), path / ".hydra" / "hydra.yaml")
    return path


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The command lines rerun hands to ``lit_vision.commands.train.main`` (which is not run)."""
    import lit_vision.commands.train

    calls: list[list[str]] = []
    monkeypatch.setattr(lit_vision.commands.train, "main", lambda: calls.append(list(sys.argv)))
    return calls


def test_a_changed_default_is_refused_naming_the_key(tmp_path, capsys, launched):
    run_dir = fake_run(tmp_path / "run", COMMAND, tamper={"model.net.head.dropout": 0.5})  # the code said 0.5 then
    with pytest.raises(SystemExit) as exit_info:
        rerun.main([str(run_dir)])
    assert exit_info.value.code == 2 and launched == []
    err = capsys.readouterr().err
    assert "model.net.head.dropout (saved 0.5, now 0.3)" in err and "--allow-changed" in err
    assert str(run_dir / ".hydra" / "config.yaml") in err

    rerun.main([str(run_dir), "--allow-changed"])
    assert launched == [["lit_vision.train", *COMMAND]]
    assert "rerunning anyway" in capsys.readouterr().err


def test_rerun_applies_extra_overrides_and_never_resumes_the_old_dir(tmp_path, launched):
    run_dir = fake_run(tmp_path / "run", ["trainer.max_epochs=2", f"resume={tmp_path / 'run'}"])
    rerun.main([str(run_dir), "seed=3"])
    assert launched == [["lit_vision.train", "trainer.max_epochs=2", "seed=3"]]
    with pytest.raises(SystemExit) as exit_info:
        rerun.main([str(run_dir), f"hydra.run.dir={run_dir}"])
    assert exit_info.value.code == 2 and len(launched) == 1


def test_a_folder_without_hydra_files_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        rerun.main([str(tmp_path)])
    assert exit_info.value.code == 1 and str(tmp_path / ".hydra" / "hydra.yaml") in capsys.readouterr().err


def test_overrides_that_no_longer_compose_are_named(tmp_path, capsys, launched):
    run_dir = fake_run(tmp_path / "run", COMMAND)
    OmegaConf.save(OmegaConf.create([*COMMAND, "experiment=a_preset_since_removed"]),
                   run_dir / ".hydra" / "overrides.yaml")
    with pytest.raises(SystemExit) as exit_info:
        rerun.main([str(run_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and launched == []
    assert str(run_dir / ".hydra" / "overrides.yaml") in err and "a_preset_since_removed" in err
