"""``python -m lit_vision.tune``: search spaces, the up-front checks, and (slow) real studies whose trials are
training processes — pruning of trials known to be bad, continuing a study, two workers at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from lit_vision.commands import tune
from lit_vision.commands.runner import execute
from lit_vision.errors import ConfigError
from lit_vision.tuning.space import SearchSpace
from lit_vision.tuning.study import TuneSettings, open_study, override_value

REPO = Path(__file__).resolve().parents[1]
TINY = ["model=dense", "data=digits", "trainer.max_epochs=3", "report.plots=false",
        "callbacks.early_stopping.patience=100",
        "~callbacks.progress_bar", "~callbacks.model_summary"]


def test_a_space_is_parsed_checked_and_sampled_with_its_conditions() -> None:
    space = SearchSpace.parse({
        "model.scheduler.warmup_fraction": {"type": "float", "low": 0.0, "high": 0.2,
                                            "when": {"model.scheduler.name": "warmup_cosine"}},
        "model.scheduler.name": {"type": "categorical", "choices": ["none", "warmup_cosine"]},
        "model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "model.net.head.hidden": {"type": "categorical", "choices": [[64], [128, 64]]},
        "data.batch_size": {"type": "int", "low": 32, "high": 128, "step": 32},
    })
    assert [p.key for p in space.params][-1] == "model.scheduler.warmup_fraction"  # after its condition
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []
    for _ in range(12):
        values = space.suggest(study.ask())
        assert ("model.scheduler.warmup_fraction" in values) == (values["model.scheduler.name"] == "warmup_cosine")
        assert 1e-4 <= values["model.optimizer.lr"] <= 1e-1 and values["data.batch_size"] in (32, 64, 96, 128)
        seen.append(values["model.net.head.hidden"])
    assert {tuple(h) for h in seen} == {(64,), (128, 64)}  # lists come back as lists
    assert len(space.corners()) == 2 and space.corners()[1]["model.net.head.hidden"] == [128, 64]


@pytest.mark.parametrize(("space", "named"), [
    ({}, "tune.space is empty"),
    ({"a.b": {"type": "float", "low": 0.5, "high": 0.5}}, "tune.space.a.b: the range [0.5, 0.5] is empty"),
    ({"a.b": {"type": "float", "low": 0, "high": 1, "log": True}}, "tune.space.a.b.low=0: a log range needs low > 0"),
    ({"a.b": {"type": "categorical", "choices": []}}, "tune.space.a.b.choices=[] must be a non-empty list"),
    ({"a.b": {"type": "uniform", "low": 0, "high": 1}}, "tune.space.a.b="),
    ({"a.b": {"type": "int", "low": 1, "high": 9, "choices": [1]}}, "does not take ['choices']"),
    ({"a.b": {"type": "float", "low": 0, "high": 1, "when": {"c.d": 1}}}, "tune.space.a.b.when names c.d"),
    # the shared value checks (lit_vision.checks), each naming the key
    ({"a.b": {"type": "float", "low": "0", "high": 1}}, "tune.space.a.b.low='0' must be a number"),
    ({"a.b": {"type": "float", "low": 0, "high": float("inf")}}, "tune.space.a.b.high=inf must be a number"),
    ({"a.b": {"type": "int", "low": 1.5, "high": 9}}, "tune.space.a.b.low=1.5 must be an integer"),
    ({"a.b": {"type": "int", "low": 1, "high": 9, "step": 0}}, "tune.space.a.b.step=0 must be an integer >= 1"),
    ({"a.b": {"type": "float", "low": 0, "high": 1, "step": -0.1}}, "tune.space.a.b.step=-0.1 must be a positive"),
    ({"a.b": {"type": "float", "low": 1, "high": 2, "log": "yes"}}, "tune.space.a.b.log='yes' must be true or false"),
])
def test_a_bad_space_is_refused_naming_the_entry(space: dict, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        SearchSpace.parse(space)
    assert named in str(err.value)


def test_values_become_hydra_overrides() -> None:
    assert [override_value(v) for v in (0.001, 64, True, None, "warmup_cosine", [128, 64], "a b")] == \
        ["0.001", "64", "true", "null", "warmup_cosine", "[128,64]", "'a b'"]


def refused(make_cfg, caplog, *overrides: str, code: int = 2, space: dict | None = None) -> str:
    caplog.clear()
    cfg = make_cfg("hparams_search=cnn_optuna", *overrides, config_name="tune")
    if space is not None:  # entries as conf/hparams_search/ YAML writes them (dotted keys)
        cfg.tune.space = space
    with pytest.raises(SystemExit) as exit_info:
        execute(tune.run, cfg, tune.check_options)
    assert exit_info.value.code == code
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.mark.parametrize(("space", "named"), [
    ({"model.optimizr.lr": {"type": "float", "low": 0.1, "high": 0.2}}, "model.optimizr.lr is not a key of the train"),
    ({"model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-5}}, "the range [0.0001, 1e-05] is empty"),
    ({"model.net.head.dropout": {"type": "float", "low": 0, "high": 1.5}}, "model.net.head.dropout=1.5"),  # train's
    ({"model.optimizer.name": {"type": "categorical", "choices": ["adam", "lion"]}}, "model.optimizer.name='lion'"),
])
def test_space_mistakes_exit_2_before_any_trial(make_cfg, caplog, space: dict, named: str) -> None:
    assert named in refused(make_cfg, caplog, space=space)


@pytest.mark.parametrize(("override", "named"), [
    ("tune.n_trials=0", "tune.n_trials=0"),
    ("tune.pruner=asha", "tune.pruner='asha'"),
    ("tune.study=a/b", "tune.study='a/b'"),
    ("tune.stale_after_s=2", "tune.stale_after_s=2 must be an integer >= 4"),
    ("tune.workers=1.5", "tune.workers=1.5 must be an integer >= 1"),
    ("trial={storage:x,study:y,number:0,metric:val/acc,pruner:none,startup_trials:0,warmup_epochs:0}",
     "trial= is set by lit_vision.tune"),
])
def test_search_mistakes_exit_2_before_any_trial(make_cfg, caplog, override: str, named: str) -> None:
    assert named in refused(make_cfg, caplog, override)


def test_an_unreachable_storage_is_one_line_exit_1(make_cfg, caplog, tmp_path: Path) -> None:
    line = refused(make_cfg, caplog, f"tune.storage=sqlite:///{tmp_path}/missing/optuna.db", code=1)
    assert f"{tmp_path}/missing" in line and "does not exist" in line
    line = refused(make_cfg, caplog, "tune.storage=mysql+nodriver://u@127.0.0.1:1/db", code=1)
    assert "tune.storage=mysql+nodriver://u@127.0.0.1:1/db cannot be opened" in line


def test_a_study_made_for_another_direction_or_space_is_refused(tmp_path: Path) -> None:
    space = SearchSpace.parse({"model.optimizer.lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}})
    tune_cfg = {"study": "s", "storage": f"sqlite:///{tmp_path}/o.db", "n_trials": 2, "workers": 1, "pruner": "none",
                "sampler": "tpe", "direction": "maximize", "startup_trials": 1, "warmup_epochs": 0,
                "stale_after_s": 120}
    open_study(TuneSettings.from_config(tune_cfg, tmp_path, "val/acc", 0), space)
    with pytest.raises(ConfigError, match="was created to maximize, this search asks to minimize"):
        open_study(TuneSettings.from_config({**tune_cfg, "direction": "minimize"}, tmp_path, "val/loss", 0), space)
    other = SearchSpace.parse({"model.optimizer.lr": {"type": "float", "low": 1e-3, "high": 1e-1, "log": True}})
    with pytest.raises(ConfigError, match=r"another search space \(different: \['model.optimizer.lr'\]\)"):
        open_study(TuneSettings.from_config(tune_cfg, tmp_path, "val/acc", 0), other)


# --- real studies (slow) ----------------------------------------------------------------------------------------
GOOD, BAD = 0.01, 1e-9  # lr of the dense net on digits: ~0.9 val/acc after one epoch, and chance (nothing learnt)
SPACE = """# @package _global_
tune:
  study: known_bad
  space:
    model.optimizer.lr: {type: categorical, choices: [1.0e-9, 0.01]}
"""


def tune_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lit_vision.tune", "hparams_search=known_bad", *TINY,
            f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"paths.log_dir={tmp_path / 'outputs'}",
            f"paths.cache_dir={tmp_path / 'cache'}", "tune.pruner=median", "tune.startup_trials=2",
            "tune.warmup_epochs=1", *extra]


@pytest.mark.slow
def test_known_bad_trials_are_pruned_and_a_rerun_continues_the_study_with_two_workers(tmp_path: Path) -> None:
    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "known_bad.yaml").write_text(SPACE)
    tune_dir = tmp_path / "outputs" / "tune" / "known_bad"
    tune_dir.mkdir(parents=True)
    storage = f"sqlite:///{tune_dir / 'optuna.db'}"
    # the order is fixed by enqueueing (the sampler would pick at random): two good trials first, so the median
    # pruner has a reference, then bad ones, which are worse than that median at epoch 1
    settings = TuneSettings.from_config({"study": "known_bad", "storage": storage, "n_trials": 5, "workers": 1,
                                         "pruner": "median", "sampler": "tpe", "direction": "maximize",
                                         "startup_trials": 2, "warmup_epochs": 1, "stale_after_s": 120}, tune_dir,
                                        "val/acc", 42)
    space = SearchSpace.parse(json.loads(json.dumps({"model.optimizer.lr": {"type": "categorical",
                                                                            "choices": [1e-9, 0.01]}})))
    study = open_study(settings, space)
    for lr in (GOOD, GOOD, BAD, GOOD, BAD):
        study.enqueue_trial({"model.optimizer.lr": lr})
    res = subprocess.run(tune_cmd(tmp_path, "tune.n_trials=5"), cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="known_bad", storage=storage).get_trials()
    states = [(t.params["model.optimizer.lr"], t.state) for t in trials]
    assert states == [(GOOD, TrialState.COMPLETE)] * 2 + [(BAD, TrialState.PRUNED), (GOOD, TrialState.COMPLETE),
                                                           (BAD, TrialState.PRUNED)]
    for t in trials:  # every trial is a training run with its own run dir, tagged with its number
        record = json.loads((tune_dir / "trials" / f"{t.number:03d}" / "metrics.json").read_text())
        assert record["trial"] == t.number and record["study"] == "known_bad"
        assert (record["pruned"] is not None) == (t.state == TrialState.PRUNED)
        if record["pruned"]:
            assert record["pruned"]["epoch"] == 1 and record["epochs_trained"] == 2
    summary = (tune_dir / "summary.md").read_text()
    assert "3 complete, 2 pruned" in summary and "**Best: trial 0**" in summary
    # the same command with a larger budget continues the study: two more trials, two at a time, none twice
    res = subprocess.run(tune_cmd(tmp_path, "tune.n_trials=7", "tune.workers=2"), cwd=REPO, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="known_bad", storage=storage).get_trials()
    assert [t.number for t in trials] == list(range(7)) and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                                                                for t in trials)
    assert sorted(p.name for p in (tune_dir / "trials").iterdir()) == [f"{n:03d}" for n in range(7)]
    assert "2 at a time" in res.stderr + res.stdout


@pytest.mark.slow
def test_a_worker_killed_mid_trial_leaves_it_failed_and_the_rerun_completes_the_study(tmp_path: Path) -> None:
    import os
    import signal
    import time

    (tmp_path / "conf" / "hparams_search").mkdir(parents=True)
    (tmp_path / "conf" / "hparams_search" / "known_bad.yaml").write_text(SPACE)
    tune_dir = tmp_path / "outputs" / "tune" / "known_bad"
    cmd = tune_cmd(tmp_path, "tune.n_trials=3", "tune.pruner=none", "tune.stale_after_s=6")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    while not (tune_dir / "trials" / "000" / ".hydra").is_dir():  # trial 0's training has started
        assert time.monotonic() < deadline and proc.poll() is None, "trial 0 never started"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the worker and its trial, as a node failure or scancel would
    proc.wait()
    storage = f"sqlite:///{tune_dir / 'optuna.db'}"
    assert [t.state for t in optuna.load_study(study_name="known_bad", storage=storage).trials] == \
        [TrialState.RUNNING]
    time.sleep(7)  # the killed trial's heartbeat goes stale
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = optuna.load_study(study_name="known_bad", storage=storage).trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.FAIL), (1, TrialState.COMPLETE),
                                                     (2, TrialState.COMPLETE)]
    assert "1 fail" in (tune_dir / "summary.md").read_text()


def test_without_a_search_space_nothing_is_written_and_one_line_says_what_to_pick(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lit_vision.tune", f"paths.log_dir={tmp_path / 'outputs'}"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert "config error: tune.study is not set: pick a search space with hparams_search=<one of" in result.stderr
    assert "fashion_optuna" in result.stderr and "interpolation" not in result.stderr
    assert not (tmp_path / "outputs").exists()  # before: outputs/tune/None/ with its .hydra/ and tune.log
