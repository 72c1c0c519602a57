"""Notebook 000's classical baselines: PCA + RandomForest / QDA with the neural report format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import compose_config, pets_overrides

from lit_vision.commands.baseline import make_pipeline, run
from lit_vision.errors import ConfigError


@pytest.mark.parametrize("classifier", ["rf", "qda"])
def test_baseline_reports_like_a_neural_run(tmp_path: Path, pets_root: Path, classifier: str):
    out = tmp_path / "run"
    cfg = compose_config([*pets_overrides(pets_root), f"baseline.classifier={classifier}",
                          "baseline.pca_components=5"], out, "baseline")
    record = run(cfg)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model"] == f"pca5+{classifier}" and saved["pca_components"] == 5
    for key in ("val/acc", "test/acc", "test/precision", "test/recall", "test/f1", "test/auroc", "test/loss"):
        assert 0.0 <= saved[key] <= (1.0 if key != "test/loss" else 100.0), key
    assert sum(saved["counts"].values()) == 10
    assert record["test/acc"] >= 0.8  # the first principal component is the brightness that separates the classes
    assert (out / "predictions.csv").read_text().count("\n") == 11


def test_pca_is_capped_by_the_training_set(tmp_path: Path, pets_root: Path):
    cfg = compose_config([*pets_overrides(pets_root), "baseline.classifier=rf", "baseline.pca_components=500",
                          "baseline.max_train=12"], tmp_path / "run", "baseline")
    record = run(cfg)
    assert record["pca_components"] == 12 and record["train_images"] == 12


def test_bad_classifier_name():
    with pytest.raises(ConfigError, match="baseline.classifier"):
        make_pipeline("svm", 5, {}, 0)


@pytest.mark.parametrize("preset,classifier", [("horse_pca_rf", "rf"), ("horse_pca_qda", "qda")])
def test_notebook_presets(tmp_path: Path, preset: str, classifier: str):
    """The preset reaches the scikit-learn pipeline: min-max scaling, PCA(500), then notebook 000's classifier."""
    from omegaconf import OmegaConf
    from sklearn.decomposition import PCA
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.preprocessing import MinMaxScaler

    cfg = compose_config([f"baseline_preset={preset}"], tmp_path / "run", "baseline")
    opts = OmegaConf.to_container(cfg.baseline)
    pipe = make_pipeline(opts["classifier"], opts["pca_components"], opts["params"], 0)
    kinds = [type(step) for _, step in pipe.steps]
    expected = RandomForestClassifier if classifier == "rf" else QuadraticDiscriminantAnalysis
    assert kinds == [MinMaxScaler, PCA, expected] and pipe.steps[1][1].n_components == 500
    assert cfg.data.mapping.positive == "horse" and cfg.task_name == preset
