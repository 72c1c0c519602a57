"""Training batches never hold a single image (BatchNorm cannot normalise one in training), and every image is
still served once per epoch: on every training loader and in grouped steps."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config

from lit_vision.commands.train import run
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.device_batches import DeviceBatches
from lit_vision.data.epoch_order import EpochOrder, ResumableDataLoader, batch_sizes
from lit_vision.data.synthetic import write_image_folder


@pytest.mark.parametrize("images, batch_size, sizes", [
    (33, 32, [33]),
    (65, 32, [32, 33]),
    (64, 32, [32, 32]),
    (66, 32, [32, 32, 2]),
    (5, 2, [2, 3]),
    (1, 32, [1]),           # nothing to join: one image is one batch
    (3, 1, [1, 1, 1]),      # batch_size=1 is the user's choice
    (0, 8, []),
])
def test_a_last_batch_of_one_image_joins_the_batch_before(images: int, batch_size: int, sizes: list[int]) -> None:
    assert batch_sizes(images, batch_size) == sizes


def arrays(n: int) -> ImageArrays:
    return ImageArrays(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n), ["x"])


def served(batches) -> list[list[int]]:
    return [y.tolist() for _, y in batches]


@pytest.mark.parametrize("n", [33, 65, 64])
def test_training_loaders_serve_every_image_once_without_a_lone_image(n: int) -> None:
    device = DeviceBatches(arrays(n), 32, True, torch.device("cpu"), seed=1)
    loader = ResumableDataLoader(arrays_dataset(arrays(n)), sampler=EpochOrder(n, seed=1), batch_size=32,
                                 collate_fn=lambda b: b)
    for batches in (device, loader):
        epoch = served(batches)
        assert [len(b) for b in epoch] == batch_sizes(n, 32) and len(batches) == len(epoch)
        assert sorted(sum(epoch, [])) == list(range(n))


def arrays_dataset(a: ImageArrays):
    from lit_vision.data.datamodule import ArrayDataset

    return ArrayDataset(a)


def test_evaluation_batches_are_plain_slices() -> None:
    assert [len(b) for b in served(DeviceBatches(arrays(33), 32, False, torch.device("cpu"), seed=0))] == [32, 1]


def test_a_lone_last_image_trains_with_batchnorm_from_a_folder(tmp_path: Path) -> None:
    """The new user's run: notebook 002's final CNN with BatchNorm, 33 training images at batch 32, a separate val
    folder; through the resident batches, the DataLoader, and grouped steps (a group of 33 splits as 32 + 1)."""
    classes = ["a", "b", "c"]
    write_image_folder(tmp_path / "data" / "train", classes, 11, size=28, channels=1)
    write_image_folder(tmp_path / "data" / "val", classes, 3, size=28, channels=1, seed=1)
    write_image_folder(tmp_path / "data" / "test", classes, 3, size=28, channels=1, seed=2)
    common = ["model=fashion_cnn", "model.batchnorm=true", "data=image_folder", f"data.root={tmp_path / 'data'}",
              "data.channels=1", "data.image_size=[28,28]", "data.batch_size=32", "trainer.max_epochs=2",
              "accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=false"]
    for name, extra in (("resident", []), ("loader", ["data.on_device=false"]), ("grouped", ["steps_per_execution=2"])):
        record = run(compose_config([*common, *extra], tmp_path / name))
        assert "test/acc" in record and record["global_step"] == 2, name  # one step of 33 images per epoch


def test_read_only_arrays_train_and_predict_without_numpy_warnings(tmp_path: Path) -> None:
    """A split read from the disk cache is a read-only memory map: neither the resident batches nor the checkpoint
    backend may wrap it (PyTorch warns once per process, so this runs in a fresh one with warnings as errors)."""
    code = """
import numpy as np, torch
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.device_batches import DeviceBatches
from lit_vision.deploy.checkpoint_backend import probabilities
images, labels = np.zeros((5, 1, 4, 4), np.uint8), np.arange(5, dtype=np.int64)
images.setflags(write=False); labels.setflags(write=False)
batches = DeviceBatches(ImageArrays(images, labels, ["x"]), 2, True, torch.device("cpu"), seed=0)
assert sum(len(y) for _, y in batches) == 5
from lit_vision.data.datamodule import ArrayDataset
x, y = ArrayDataset(ImageArrays(images, labels, ["x"]))[[0, 3]]
assert y.tolist() == [0, 3]
class Model(torch.nn.Module):
    class_names = ["a", "b"]
    def __init__(self):
        super().__init__(); self.w = torch.nn.Parameter(torch.zeros(1))
    def eval_logits(self, x):
        return x.float().flatten(1)[:, :2] + self.w
    def probabilities(self, logits):
        return logits.softmax(1)
assert probabilities(Model(), images, batch_size=2).shape == (5, 2)
"""
    result = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
