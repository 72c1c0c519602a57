"""Every config preset composes, and every experiment preset runs fast_dev_run on synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FAST
from lit_vision.config import CONF_DIR
from lit_vision.train import run

EXPERIMENTS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
GROUPS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml") if not p.stem.startswith("_"))
          for g in ("data", "model", "trainer", "accelerator", "callbacks", "logger", "debug")}


@pytest.mark.parametrize("group, option", [(g, o) for g, opts in GROUPS.items() for o in opts])
def test_every_group_option_composes(make_cfg, group, option):
    cfg = make_cfg(f"{group}={option}")
    assert cfg.trainer._target_.endswith("Trainer")
    assert cfg.data.source and cfg.model.net._target_


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.task_name and cfg.model.net._target_


def synthetic_root_overrides(cfg, request) -> list[str]:
    """Point whatever source an experiment uses at small synthetic data."""
    source = cfg.data.source
    if source == "cifar10":
        return [f"data.root={request.getfixturevalue('cifar_folders')}"]
    if source == "digits":
        return []
    fixture = f"synthetic_{source}_root"
    if fixture in request.fixturenames or request.config.pluginmanager.get_plugin("conftest"):
        try:
            return [f"data.root={request.getfixturevalue(fixture)}"]
        except pytest.FixtureLookupError:
            pass
    pytest.skip(f"no synthetic data fixture for source {source!r} (add one named {fixture})")


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_runs_fast_dev_run(make_cfg, request, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    overrides = synthetic_root_overrides(cfg, request)
    cfg = make_cfg(f"experiment={experiment}", *overrides, *FAST, "data.batch_size=8")
    record = run(cfg)
    assert "test/acc" in record
    assert Path(cfg.paths.output_dir, "metrics.json").exists()
