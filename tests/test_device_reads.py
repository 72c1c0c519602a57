"""No device read in a training step: every preset family, on the CPU, under lit_vision.training.device_reads.

On a GPU a read of a tensor's value (``.item()``, ``bool()``, ``.tolist()``, ``nonzero``, a number copied to the
device …) makes the host wait for the GPU; on a CPU it costs nothing and hides. The counter finds the same call
sites on the CPU: training steps read nothing except on the steps whose logs the loggers write and at an epoch's end,
and validation steps read nothing (their metrics are computed once, at the epoch's end).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from lit_vision.training.device_reads import DeviceReads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
# benchmarks/device_reads.py: the same short runs (two epochs with logging and non-logging steps, validation, the
# default callbacks and CSV logger), printed as a table of counts
from device_reads import SHORT, counted_run  # noqa: E402

#: (case, overrides): each preset family and each recipe feature the issue names
CASES = [
    ("horse_cnn: binary convnet, bce, adam", ["experiment=horse_cnn"]),
    ("cifar10_model_s: batchnorm, rmsprop, 10 classes", ["experiment=cifar10_model_s"]),
    ("fashion_dense: dense net, grouped steps", ["experiment=fashion_dense"]),
    ("mnist_dense_mse: mse loss, grouped steps", ["experiment=mnist_dense_mse"]),
    ("mnist_cnn: grouped steps", ["experiment=mnist_cnn"]),
    ("fer_custom_cnn_aug: crop/flip augmentation", ["experiment=fer_custom_cnn_aug"]),
    ("cifar10_fast: whitening, lookahead, tta, label smoothing", ["experiment=cifar10_fast"]),
    ("ema", ["experiment=cifar10_model_s", "model.ema_decay=0.9"]),
    ("mixup and cutmix", ["experiment=cifar10_model_s", "model.mix.mixup_alpha=0.2", "model.mix.cutmix_alpha=1.0"]),
    ("class weights", ["experiment=fer_custom_cnn", "data=fer_happy_sad_weighted"]),
    ("TrivialAugment", ["experiment=horse_cnn", "data.augment.trivial_augment=true"]),
    ("tensorboard logger", ["experiment=horse_cnn", "logger=tensorboard"]),
    ("rich progress bar", ["experiment=horse_cnn",
                           "callbacks.progress_bar._target_=lit_vision.training.callbacks.RichStepLossBar",
                           "~callbacks.progress_bar.log_refresh_rate"]),
    ("DataLoader batches (not device-resident)", ["experiment=horse_cnn", "data.on_device=false"]),
]
# frozen VGG16: its feature cache keys images on the host, so it is used on a CPU only (a GPU runs the backbone);
# the GPU's path is what is counted here
SLOW_CASES = [
    ("fer_vgg16: frozen timm backbone", ["experiment=fer_vgg16", "model.net.cache_features=false"]),
    ("mlflow logger", ["experiment=horse_cnn", "logger=mlflow"]),
    ("data=shards", ["model=cnn", "data=shards"]),
]


def data_root(make_cfg, synthetic_roots, overrides: list[str]) -> list[str]:
    data = make_cfg(*overrides).data
    if data.name == "digits":
        return []
    # notebook 004's undersampling to 4818 images per class needs more than the synthetic folders hold
    return [f"data.root={synthetic_roots[data.name]}", *(["data.mapping.per_class=null"] if "mapping" in data else [])]


def check_no_reads(make_cfg, synthetic_roots, overrides: list[str]) -> DeviceReads:
    cfg = make_cfg(*overrides, *data_root(make_cfg, synthetic_roots, overrides), *SHORT)
    reads = counted_run(cfg)
    assert reads.steps_seen["train"] >= 2, dict(reads.steps_seen)  # the check saw non-logging steps
    assert reads.steps_seen["validation_step"] >= 2, dict(reads.steps_seen)
    assert not reads.in_windows("train"), \
        f"device reads in non-logging training steps:\n{reads.report('train')}"
    assert not reads.in_windows("validation_step"), \
        f"device reads in validation steps:\n{reads.report('validation_step')}"
    return reads


@pytest.mark.parametrize("case,overrides", CASES, ids=[c for c, _ in CASES])
def test_training_steps_read_nothing_from_the_device(make_cfg, synthetic_roots, case, overrides) -> None:
    reads = check_no_reads(make_cfg, synthetic_roots, overrides)
    if reads.steps_seen["train_logging"]:  # the logged steps do read: the loss they write
        assert reads.in_windows("train_logging")


@pytest.mark.slow
@pytest.mark.parametrize("case,overrides", SLOW_CASES, ids=[c for c, _ in SLOW_CASES])
def test_training_steps_read_nothing_from_the_device_slow_cases(make_cfg, synthetic_roots, case, overrides) -> None:
    check_no_reads(make_cfg, synthetic_roots, overrides)


def test_a_read_in_a_training_step_is_found_with_its_call_site(make_cfg, synthetic_roots, monkeypatch) -> None:
    """The counter is not blind: a loss read at every step (what a progress bar of Python numbers does) is
    reported at the line that reads it."""
    from lit_vision.training.classifier import ImageClassifier

    step = ImageClassifier.training_step

    def reading_step(self, batch, batch_idx):
        loss = step(self, batch, batch_idx)
        self.last_loss = loss.item()
        return loss

    monkeypatch.setattr(ImageClassifier, "training_step", reading_step)
    overrides = ["experiment=horse_cnn"]
    cfg = make_cfg(*overrides, *data_root(make_cfg, synthetic_roots, overrides), *SHORT)
    reads = counted_run(cfg)
    found = reads.in_windows("train")
    assert len(found) == reads.steps_seen["train"] and {r.kind for r in found} == {"item"}
    assert "test_device_reads.py" in found[0].site and "reading_step" in found[0].site


def test_the_counter_sees_each_kind_of_read_and_not_the_optimizers_host_counters() -> None:
    x = torch.arange(6.0)
    kinds = []
    with DeviceReads() as reads:
        for read in (lambda: x.sum().item(), lambda: bool(x[0] > 1), lambda: float(x[1]), lambda: x.tolist(),
                     lambda: x.numpy(), lambda: x.cpu(), lambda: x.nonzero(), lambda: x[x > 2],
                     lambda: torch.bincount(x.long()), lambda: torch.unique(x),
                     lambda: torch.tensor(1.0, device=torch.device("cpu"))):
            before = len(reads.reads)
            read()
            kinds.append([r.kind for r in reads.reads[before:]])
        before = len(reads.reads)
        x * 2 + x.mean()  # device work, no read
        torch.tensor(0.0, device="cpu")  # the host by intent (torch.optim's step counters)
        net = torch.nn.Linear(3, 1)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.1)
        reads.watch_optimizers([optimizer])
        for _ in range(3):
            net(torch.ones(2, 3)).sum().backward()
            optimizer.step()  # reads state["step"] on the host for its bias correction
        quiet = reads.reads[before:]
    assert all(kinds), kinds  # every one of them was seen
    assert kinds[:3] == [["item"]] * 3 and kinds[3:6] == [["tolist"], ["numpy"], ["cpu"]]
    assert kinds[6] == ["nonzero"] and kinds[7] == ["index"] and kinds[8] == ["bincount"]
    assert kinds[-1] == ["to_device"]
    assert quiet == [], quiet
    assert "test_device_reads.py" in reads.reads[0].site


@pytest.mark.slow
def test_the_device_reads_benchmark_prints_a_row_per_case(tmp_path) -> None:
    import json
    import os
    import subprocess

    out = tmp_path / "reads.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "device_reads.py"
    done = subprocess.run([sys.executable, str(script), "--cases", "cifar10_model_s", "ema", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert [r["case"] for r in rows] == ["cifar10_model_s", "ema"]
    assert all(r["per_train_step"] == 0 and r["steps"]["train"] > 0 for r in rows)
    assert all(r["per_logging_step"] > 0 for r in rows)  # the logged loss is read where it is written
    assert "reads / non-logging step" in done.stdout
