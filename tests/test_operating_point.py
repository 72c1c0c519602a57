"""Operating points: thresholds chosen on scores with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

from lit_vision.deploy.operating_point import UnreachableGoalError, choose_threshold, metrics_at, parse_goal
from lit_vision.errors import ConfigError

# sorted by score: labels 1 1 0 1 0 0 1 0 0 0 (scores 0.95 .. 0.05)
SCORES = np.array([0.95, 0.85, 0.75, 0.65, 0.55, 0.45, 0.35, 0.25, 0.15, 0.05])
LABELS = np.array([1, 1, 0, 1, 0, 0, 1, 0, 0, 0])


def test_goals_are_parsed_and_bad_ones_refused() -> None:
    assert parse_goal("max_f1") == ("max_f1", None)
    assert parse_goal("precision>=0.85") == ("precision", 0.85)
    assert parse_goal("recall >= 1") == ("recall", 1.0)
    for bad in ("f1", "precision>=1.5", "precision<=0.8", "recall>=", ""):
        with pytest.raises(ConfigError, match="report.operating_point"):
            parse_goal(bad)


def test_max_f1_picks_the_best_f1_threshold() -> None:
    # threshold 0.65: tp 3, fp 1, fn 1 → F1 0.75 (0.35 gives 4/7 precision, F1 0.727; 0.85 gives 0.667)
    point = choose_threshold(SCORES, LABELS, "max_f1")
    assert point["threshold"] == 0.65
    assert point["val"]["f1"] == pytest.approx(0.75) and (point["val"]["tp"], point["val"]["fp"]) == (3, 1)


def test_precision_goal_takes_the_highest_recall_that_keeps_the_precision() -> None:
    # precision >= 0.75: thresholds 0.95 (1.0), 0.85 (1.0), 0.65 (0.75) qualify; 0.65 has the most recall (0.75)
    assert choose_threshold(SCORES, LABELS, "precision>=0.75")["threshold"] == 0.65
    # precision >= 0.9: only 0.95 and 0.85; 0.85 recalls 2 of 4
    point = choose_threshold(SCORES, LABELS, "precision>=0.9")
    assert point["threshold"] == 0.85 and point["val"]["recall"] == 0.5


def test_recall_goal_takes_the_highest_precision_that_keeps_the_recall() -> None:
    point = choose_threshold(SCORES, LABELS, "recall>=1.0")  # every positive: down to 0.35, precision 4/7
    assert point["threshold"] == 0.35 and point["val"]["precision"] == pytest.approx(4 / 7)


def test_an_unreachable_goal_says_what_was_reachable() -> None:
    with pytest.raises(UnreachableGoalError, match="best precision"):
        choose_threshold(np.array([0.9, 0.8]), np.array([0, 1]), "precision>=0.9")
    with pytest.raises(UnreachableGoalError, match="both classes"):
        choose_threshold(np.array([0.9, 0.8]), np.array([1, 1]), "max_f1")


def test_metrics_at_a_threshold() -> None:
    m = metrics_at(SCORES, LABELS, 0.5)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (3, 2, 1, 4)
    assert m["precision"] == pytest.approx(0.6) and m["recall"] == pytest.approx(0.75) and m["acc"] == 0.7


def test_a_binary_run_stores_its_operating_point_and_reports_test_metrics_at_it(make_cfg) -> None:
    import json
    from pathlib import Path

    from lit_vision.commands.train import run

    cfg = make_cfg("data.mapping.positive='0'", "trainer.max_epochs=1", "accelerator=cpu",
                   "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=true",
                   "report.operating_point='recall>=0.9'")
    record = run(cfg)
    point = record["operating_point"]
    assert point["goal"] == "recall>=0.9" and point["val"]["recall"] >= 0.9
    assert set(point["test"]) >= {"threshold", "precision", "recall", "tp", "fp"}
    assert point["test_argmax"]["threshold"] == 0.5
    out = Path(cfg.paths.output_dir)
    assert json.loads((out / "operating_point.json").read_text())["threshold"] == point["threshold"]
    assert json.loads((out / "metrics.json").read_text())["operating_point"]["goal"] == "recall>=0.9"
    assert (out / "plots" / "precision_recall.png").is_file()


def test_a_bad_goal_is_refused_before_training(make_cfg) -> None:
    from lit_vision.config import validate_config

    with pytest.raises(ConfigError, match="report.operating_point"):
        validate_config(make_cfg("report.operating_point=f1"))
