"""XGBoost on a checkpoint's embeddings: same report files as a neural run, JSON booster, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config

from lit_vision.commands.xgb import run
from lit_vision.errors import ConfigError
from lit_vision.models.boosting import MODEL_FILE, load_booster, resolve_device
from lit_vision.training.checkpoints import load_classifier


def test_xgb_run_writes_the_neural_report_format(xgb_run: Path, cnn_run: Path):
    record = json.loads((xgb_run / "metrics.json").read_text())
    neural = json.loads((cnn_run / "metrics.json").read_text())
    for key in ("test/acc", "test/precision", "test/recall", "test/f1", "test/auroc", "val/acc", "counts"):
        assert key in record and key in neural, key
    assert record["class_names"] == neural["class_names"] == ["cat", "dog"]
    assert sum(record["counts"].values()) == sum(neural["counts"].values()) == 10
    assert record["test/acc"] >= 0.8  # brightness separates the synthetic classes; the embedding keeps it
    model = load_classifier(cnn_run / "checkpoints" / "best.ckpt")
    assert record["embedding_dim"] == model.net.num_features == 128
    assert record["xgb_params"]["max_depth"] == 5 and record["xgb_params"]["objective"] == "binary:logistic"
    assert 0 <= record["best_iteration"] < 30
    source = json.loads((xgb_run / "source_model" / "metrics.json").read_text())
    assert source["test/acc"] == pytest.approx(neural["test/acc"], abs=1e-6)  # same checkpoint, same test split
    assert source["counts"] == neural["counts"]
    rows = (xgb_run / "predictions.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("index,source,target")


def test_booster_is_xgboost_json_not_a_pickle(xgb_run: Path):
    saved = json.loads((xgb_run / MODEL_FILE).read_text())
    assert "learner" in saved
    assert not list(xgb_run.glob("*.pkl")) and not list(xgb_run.glob("*.pickle"))
    clf, meta = load_booster(xgb_run)
    assert meta["class_names"] == ["cat", "dog"] and Path(meta["ckpt_path"]).is_file()
    assert clf.n_features_in_ == 128


def test_checkpoint_and_data_with_other_classes_is_refused(cnn_run: Path, tmp_path: Path):
    cfg = compose_config([f"ckpt_path={cnn_run / 'checkpoints' / 'best.ckpt'}", "data=digits", "accelerator=cpu"],
                         tmp_path / "run", "xgb")
    with pytest.raises(ConfigError, match="classes"):
        run(cfg)


def test_device_follows_the_accelerator_config():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="accelerator=cuda"):
            resolve_device("cuda")


def test_notebook_preset_reaches_the_booster(tmp_path: Path):
    """Notebook 004's XGBClassifier parameters arrive in the booster that is fitted."""
    from omegaconf import OmegaConf

    from lit_vision.models.boosting import make_classifier

    cfg = compose_config(["xgb_preset=fer_custom_xgb", "ckpt_path=x.ckpt"], tmp_path / "run", "xgb")
    params = make_classifier(OmegaConf.to_container(cfg.xgb), num_classes=2, device="cpu", seed=0).get_params()
    assert {k: params[k] for k in ("n_estimators", "gamma", "subsample", "colsample_bytree", "learning_rate",
                                   "max_depth", "objective")} == {
        "n_estimators": 1000, "gamma": 1, "subsample": 0.8, "colsample_bytree": 0.8, "learning_rate": 0.05,
        "max_depth": 5, "objective": "binary:logistic"}
    assert cfg.data.mapping.classes == {"sad": 0, "happy": 1}
