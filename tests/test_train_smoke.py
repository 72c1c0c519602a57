"""End-to-end: compose, fit, test and write artifacts on synthetic data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST

from lit_vision.commands.train import run


def test_default_run_on_digits_writes_report(make_cfg):
    cfg = make_cfg("trainer.max_epochs=2", "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary")
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test/acc", "test/precision", "test/recall", "test/f1", "test/auroc",
                "test/precision_weighted", "test/recall_weighted", "test/f1_weighted", "val/acc"):
        assert key in metrics, key
    assert metrics["test/acc"] > 0.5  # 2 epochs on digits is already far above chance (0.1)
    assert sum(map(sum, metrics["confusion_matrix"])) == sum(metrics["support"].values())
    assert (out / "checkpoints" / "best.ckpt").exists() and (out / "checkpoints" / "last.ckpt").exists()
    assert (out / "predictions.csv").read_text().count("\n") == sum(metrics["support"].values()) + 1
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 2 and "val/loss" in history[0]
    assert record["epochs_trained"] == 2


@pytest.mark.parametrize("fixture", ["cifar_folders", "cifar_batches"])
def test_cifar_horse_binary_metrics(make_cfg, request, fixture):
    root = request.getfixturevalue(fixture)
    cfg = make_cfg("model=cnn", "data=cifar_horse", f"data.root={root}", "data.batch_size=16",
                   "trainer.max_epochs=1", "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary")
    record = run(cfg)
    assert record["class_names"] == ["not_horse", "horse"]
    assert set(record["counts"]) == {"tp", "fp", "fn", "tn"}
    assert sum(record["counts"].values()) == (40 if fixture == "cifar_folders" else 30)
    c = record["counts"]  # the reported metrics are the ones the confusion counts imply
    assert record["test/acc"] == pytest.approx((c["tp"] + c["tn"]) / sum(c.values()), abs=1e-6)
    assert record["test/precision"] == pytest.approx(c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0,
                                                     abs=1e-6)
    assert record["test/recall"] == pytest.approx(c["tp"] / (c["tp"] + c["fn"]), abs=1e-6)
    assert record["confusion_matrix"] == [[c["tn"], c["fp"]], [c["fn"], c["tp"]]]


def test_fast_dev_run_without_checkpoint_still_tests(make_cfg):
    cfg = make_cfg(*FAST)
    record = run(cfg)
    assert "test/acc" in record and record["best_checkpoint"] is None


def test_checkpoint_hparams_are_plain_and_load_weights_only(make_cfg):
    import torch

    cfg = make_cfg("trainer.max_epochs=1", "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary",
                   "report.plots=false")
    record = run(cfg)
    ckpt = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["class_names"] == [str(i) for i in range(10)]
    assert hp["input_spec"]["image_size"] == [8, 8] and len(hp["input_spec"]["mean"]) == 1

    def plain(v):
        return v is None or isinstance(v, (str, int, float, bool)) or (
            isinstance(v, (list, tuple)) and all(plain(x) for x in v)) or (
            isinstance(v, dict) and all(isinstance(k, str) and plain(x) for k, x in v.items()))
    assert plain(hp)
