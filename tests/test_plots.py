"""Run plots and the classification report: unit checks on known outputs, and real binary/multiclass runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import classification_report as sk_report

from lit_vision.commands.train import run
from lit_vision.runs import plots
from lit_vision.runs.history import write_history
from lit_vision.runs.reporting import classification_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=true"]


def assert_png(path: Path) -> None:
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5_000, (path, len(data))


def fake_outputs(k: int, n: int = 120, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    targets = torch.arange(n) % k
    logits = torch.randn(n, k, generator=g) + 2.0 * torch.nn.functional.one_hot(targets, k)
    return logits.softmax(dim=1), targets


@pytest.mark.parametrize("k", [2, 4])
def test_run_figures_binary_and_multiclass(tmp_path, k):
    probs, targets = fake_outputs(k)
    images = np.random.default_rng(0).integers(0, 255, (len(targets), 3, 16, 16), dtype=np.uint8)
    history = [{"epoch": e, "train/loss": 1.0 / (e + 1), "val/loss": 1.2 / (e + 1), "train/acc": 0.5 + e / 10,
                "val/acc": 0.45 + e / 10, "lr-Adam": 1e-3 / (e + 1)} for e in range(3)]
    names = [f"c{i}" for i in range(k)]
    figures = plots.run_figures(history, {"probs": probs, "targets": targets}, names, images, misclassified=6)
    expected = {"learning_curves", "confusion_matrix", "roc", "misclassified"}
    expected |= {"precision_recall"} if k == 2 else set()
    assert set(figures) == expected
    paths = plots.save_figures(figures, tmp_path / "plots")
    assert {p.stem for p in paths} == expected
    for p in paths:
        assert_png(p)


def test_misclassified_are_wrong_and_most_confident_first():
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.95, 0.05]])
    targets = torch.tensor([0, 0, 1, 1, 1])
    assert plots.misclassified_indices(probs, targets, 10) == [4, 1, 2]
    assert plots.misclassified_indices(probs, targets, 1) == [4]


def test_classification_report_matches_sklearn():
    probs, targets = fake_outputs(3, n=90, seed=1)
    names = ["a", "b", "c"]
    ours = classification_report(probs, targets, names)
    ref = sk_report(targets.numpy(), probs.argmax(1).numpy(), target_names=names, output_dict=True, zero_division=0)
    for row in names + ["macro avg", "weighted avg"]:
        for col in ("precision", "recall", "f1-score"):
            assert ours[row][col] == pytest.approx(ref[row][col], abs=1e-6), (row, col)
        assert ours[row]["support"] == ref[row]["support"]
    assert ours["accuracy"] == pytest.approx(ref["accuracy"])


def test_history_keeps_learning_rate_per_epoch(tmp_path):
    csv_log = tmp_path / "metrics.csv"
    csv_log.write_text("epoch,lr-Adam,step,train/loss_epoch,val/loss\n"
                       ",0.001,0,,\n0,,9,0.9,\n0,,9,,1.0\n,0.0005,10,,\n1,,19,0.5,\n1,,19,,0.7\n")
    rows = write_history(csv_log, tmp_path / "history.csv")
    assert [r["lr-Adam"] for r in rows] == [0.001, 0.0005]
    assert [r["train/loss"] for r in rows] == [0.9, 0.5]


def test_multiclass_run_writes_plots_and_report(make_cfg):
    cfg = make_cfg(*QUIET, "trainer.max_epochs=2", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1")
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    for name in ("learning_curves", "confusion_matrix", "roc", "misclassified"):
        assert_png(out / "plots" / f"{name}.png")
    assert not (out / "plots" / "precision_recall.png").exists()  # binary only
    header = (out / "history.csv").read_text().splitlines()[0]
    assert "lr-Adam" in header.split(",")
    report = json.loads((out / "metrics.json").read_text())["classification_report"]
    assert set(record["class_names"]) <= set(report)
    assert sum(report[c]["support"] for c in record["class_names"]) == sum(record["support"].values())
    assert report["accuracy"] == pytest.approx(record["test/acc"], abs=1e-6)


def test_binary_run_plots_precision_recall_and_tensorboard(make_cfg, cifar_folders):
    cfg = make_cfg(*QUIET, "data=cifar_horse", f"data.root={cifar_folders}", "data.batch_size=16",
                   "trainer.max_epochs=1", "logger=tensorboard")
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    for name in ("learning_curves", "confusion_matrix", "roc", "precision_recall"):
        assert_png(out / "plots" / f"{name}.png")
    report = json.loads((out / "metrics.json").read_text())["classification_report"]
    assert report["horse"]["support"] == record["support"]["horse"]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert {"plots/roc", "plots/confusion_matrix"} <= set(events.Tags()["images"])


def test_plots_can_be_switched_off(make_cfg):
    cfg = make_cfg("accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary",
                   "trainer.fast_dev_run=true", "report.plots=false")
    run(cfg)
    assert not (Path(cfg.paths.output_dir) / "plots").exists()
