"""python -m lit_vision.compare: one table over neural, XGBoost and baseline runs, plus ensemble rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml
from conftest import compose_config

from lit_vision.commands.compare import compare, main
from lit_vision.errors import LitVisionError


def test_compare_table_and_ensemble(cnn_run: Path, xgb_run: Path, tmp_path: Path):
    out = tmp_path / "cmp" / "nb004"
    rows = compare([str(cnn_run), str(xgb_run.parent / "*")], out, ensemble=True)
    assert [r["model"] for r in rows] == ["pets_cnn", "pets_xgb", "ensemble: mean probability",
                                          "ensemble: majority vote"]
    source = compare([str(xgb_run / "source_model")], out.parent / "source")
    assert source[0]["model"] == "pets_cnn" and source[0]["test/acc"] == pytest.approx(rows[0]["test/acc"], abs=1e-6)
    neural = json.loads((cnn_run / "metrics.json").read_text())
    assert rows[0]["test/acc"] == neural["test/acc"] and rows[0]["TP"] == neural["counts"]["tp"]
    for r in rows:
        assert r["TP"] + r["FP"] + r["FN"] + r["TN"] == 10
    with open(out.with_suffix(".csv"), newline="") as f:
        written = list(csv.DictReader(f))
    assert len(written) == 4 and written[1]["model"] == "pets_xgb"
    md = out.with_suffix(".md").read_text().splitlines()
    assert md[0].startswith("| model | run | seed | val/acc | test/acc") and len(md) == 6
    assert written[0]["seed"] == "" and written[0]["epochs"] == "3"  # the fixture runs have no .hydra/
    assert not out.with_name("nb004_seeds.csv").exists()  # nothing to group


def test_ensemble_refuses_runs_on_other_test_sets(cnn_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from lit_vision.commands.baseline import run

    other = tmp_path / "digits_run"
    run(compose_config(["baseline.classifier=qda", "baseline.pca_components=5"], other, "baseline"))
    with pytest.raises(SystemExit) as exit_info:
        main([str(cnn_run), str(other), "--ensemble", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 1
    assert "--ensemble needs runs with the same classes" in capsys.readouterr().err
    rows = compare([str(cnn_run), str(other)], tmp_path / "y")  # without --ensemble it is fine
    assert len(rows) == 2


def test_missing_run_dir(tmp_path: Path):
    from lit_vision.commands.compare import find_runs

    with pytest.raises(LitVisionError, match="no metrics.json"):
        find_runs([str(tmp_path)])


# --- seeds: runs differing only in their seed (hand-made run dirs, no training) ------------------------
def fake_run(root: Path, name: str, seed: int, lr: float, val_acc: float, to_08: float | None,
             hydra: bool = True) -> Path:
    """A finished run as train leaves it: ``metrics.json`` and (``hydra``) ``.hydra/config.yaml`` + overrides."""
    run = root / "horse_cnn" / "runs" / name
    (run / ".hydra").mkdir(parents=True)
    if hydra:
        config = {"task_name": "horse_cnn", "seed": seed, "resume": None, "model": {"optimizer": {"lr": lr}},
                  "paths": {"output_dir": str(run)}, "data": {"seed": "${seed}"}}
        (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
        (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(
            ["experiment=horse_cnn", f"seed={seed}", f"model.optimizer.lr={lr}"]))
    metrics = {"val/acc": val_acc, "test/acc": val_acc - 0.01, "counts": {"tp": 5, "fp": 1, "fn": 2, "tn": 4},
               "epochs_trained": 5, "train_seconds": 600.0 + 60 * seed,
               "time_to_val_acc": {"0.8": None if to_08 is None else {"epoch": 2, "seconds": to_08 * 60},
                                   "0.9": None}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run


def test_compare_groups_seeds(tmp_path: Path, capsys: pytest.CaptureFixture):
    runs = tmp_path / "outputs"
    fake_run(runs, "a1", 1, 0.01, 0.85, 4.0)
    fake_run(runs, "a2", 2, 0.01, 0.87, 4.5)
    fake_run(runs, "a3", 3, 0.01, 0.79, None)   # never reached 0.8
    fake_run(runs, "b1", 1, 0.001, 0.80, 5.0)
    fake_run(runs, "b2", 2, 0.001, 0.82, 5.5)
    fake_run(runs, "c1", 1, 0.1, 0.70, None)    # alone: no seed table row
    fake_run(runs, "x1", 2, 0.01, 0.86, 4.0, hydra=False)  # no config: never grouped, blank seed
    out = tmp_path / "cmp" / "seeds"
    rows = compare([str(runs / "horse_cnn" / "runs" / "*")], out)
    assert [r["seed"] for r in rows] == [1, 2, 3, 1, 2, 1, None]
    assert rows[0]["train min"] == 11.0 and rows[0]["min to val/acc 0.8"] == 4.0
    assert rows[2]["min to val/acc 0.8"] == "never" and rows[0]["min to val/acc 0.9"] == "never"
    printed = capsys.readouterr().out
    assert "mean ± std over seeds" in printed and "2 of 3 reached: 4.250 ± 0.354" in printed
    with open(out.with_name("seeds_seeds.csv"), newline="") as f:
        groups = list(csv.DictReader(f))
    assert [g["group"] for g in groups] == ["horse_cnn model.optimizer.lr=0.01", "horse_cnn model.optimizer.lr=0.001"]
    assert [g["n"] for g in groups] == ["3", "2"] and groups[0]["seeds"] == "1, 2, 3"
    assert float(groups[0]["val/acc mean"]) == pytest.approx((0.85 + 0.87 + 0.79) / 3)
    assert float(groups[0]["val/acc std"]) == pytest.approx(0.04163331998932266)  # statistics.stdev, ddof=1
    assert float(groups[1]["train min mean"]) == pytest.approx(11.5) and groups[1]["train min n"] == "2"
    assert groups[0]["min to val/acc 0.8 n"] == "2" and float(groups[0]["min to val/acc 0.8 mean"]) == 4.25
    assert groups[0]["min to val/acc 0.9 n"] == "0" and groups[0]["min to val/acc 0.9 mean"] == ""
    md = out.with_suffix(".md").read_text()
    assert "| horse_cnn | x1 |  | 0.8600 |" in md  # per-run table first, the run without .hydra/ unseeded
    assert ("| horse_cnn model.optimizer.lr=0.01 | 3 | 1, 2, 3 | 0.8367 ± 0.0416 | 0.8267 ± 0.0416 | 5.000 ± 0.000 "
            "| 1.000 ± 0.000 | 2.000 ± 0.000 | 4.000 ± 0.000 | 5.000 ± 0.000 | 12.00 ± 1.00 | "
            "2 of 3 reached: 4.250 ± 0.354 | 0 of 3 reached |") in md
    assert md.index("| model | run | seed |") < md.index("## mean ± std over seeds")
