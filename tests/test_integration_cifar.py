"""A few real batches of ../shared/datasets/cifar10-jpeg through the whole pipeline (slow: decodes 60k JPEGs
once into the project's data/cache, later runs memory-map that cache)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO_ROOT as PROJECT_ROOT
from omegaconf import open_dict

from lit_vision.commands.train import run

pytestmark = pytest.mark.slow


def test_horse_cnn_on_real_cifar_jpeg(make_cfg, shared_datasets):
    cfg = make_cfg("experiment=horse_cnn", f"data.root={shared_datasets / 'cifar10-jpeg'}", "data.batch_size=64",
                   "trainer.max_epochs=1", "trainer.limit_train_batches=3", "trainer.limit_val_batches=1",
                   "trainer.limit_test_batches=2", "accelerator=cpu", "~callbacks.progress_bar",
                   "~callbacks.model_summary", "report.plots=false")
    with open_dict(cfg):
        cfg.paths.cache_dir = str(PROJECT_ROOT / "data" / "cache")  # shared with real runs, never inside ../shared
    record = run(cfg)
    data = record["data"]
    assert data["counts"]["test"] == {"not_horse": 9000, "horse": 1000}
    assert sum(data["counts"]["train"].values()) + sum(data["counts"]["val"].values()) == 50_000
    assert data["counts"]["val"]["horse"] == 500  # stratified 10% of train
    assert sum(record["counts"].values()) == 2 * cfg.data.eval_batch_size  # two test batches
    metrics = json.loads(Path(cfg.paths.output_dir, "metrics.json").read_text())
    assert {"test/acc", "test/precision", "test/recall", "test/f1", "test/auroc"} <= set(metrics)
