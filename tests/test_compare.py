"""python -m lit_vision.compare: one table over neural, XGBoost and baseline runs, plus ensemble rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import compose_config
from lit_vision.compare import compare, main
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
    assert md[0].startswith("| model | run | val/acc | test/acc") and len(md) == 6


def test_ensemble_refuses_runs_on_other_test_sets(cnn_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from lit_vision.baseline import run

    other = tmp_path / "digits_run"
    run(compose_config(["baseline.classifier=qda", "baseline.pca_components=5"], other, "baseline"))
    with pytest.raises(SystemExit) as exit_info:
        main([str(cnn_run), str(other), "--ensemble", "--out", str(tmp_path / "x")])
    assert exit_info.value.code == 1
    assert "--ensemble needs runs with the same classes" in capsys.readouterr().err
    rows = compare([str(cnn_run), str(other)], tmp_path / "y")  # without --ensemble it is fine
    assert len(rows) == 2


def test_missing_run_dir(tmp_path: Path):
    from lit_vision.compare import find_runs

    with pytest.raises(LitVisionError, match="no metrics.json"):
        find_runs([str(tmp_path)])
