"""``python -m lit_vision.inspect``: PNGs, summary and exact pixel statistics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT as PROJECT_ROOT
from PIL import Image

from lit_vision.commands.inspect import class_means, inspect, pixel_stats
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.synthetic import write_torchvision_idx

PNGS = ("samples.png", "class_counts.png", "mean_images.png")


def test_pixel_stats_and_class_means_are_exact():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 3, 5, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, size=37)
    arrays = ImageArrays(images, labels, ["a", "b", "c"])
    mean, std = pixel_stats(arrays, chunk=8)  # several chunks
    x = images.astype(np.float64) / 255
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-10)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-8)
    means = class_means(arrays, chunk=8)
    for k in range(3):
        np.testing.assert_allclose(means[k], images[labels == k].mean(axis=0), rtol=1e-10)


def test_inspect_digits_writes_pngs_and_summary(make_cfg, tmp_path, capsys):
    cfg = make_cfg("inspect.samples_per_class=3", config_name="inspect")
    out = tmp_path / "inspect"
    summary = inspect(cfg, out)
    for name in PNGS:
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.width > 200 and img.height > 100
    saved = json.loads((out / "summary.json").read_text())
    assert saved["counts"] == summary["counts"] and set(saved["counts"]) == {"train", "val", "test"}
    assert sum(saved["sizes"].values()) == 1797
    assert saved["channels"] == 1 and saved["image_size"] == [8, 8]
    assert 0.0 < saved["pixel_mean"][0] < 1.0 and 0.0 < saved["pixel_std"][0] < 1.0
    printed = capsys.readouterr().out
    assert "total" in printed and f"{saved['pixel_mean'][0]:.4f}" in printed


def test_inspect_shows_the_mapping_training_would_use(make_cfg, tmp_path):
    cfg = make_cfg("data.mapping.positive='3'", "data.mapping.negative_name=other", "data.mapping.balance=true",
                   config_name="inspect")
    summary = inspect(cfg, tmp_path / "out")
    assert summary["class_names"] == ["other", "3"]
    assert summary["counts"]["train"]["other"] == summary["counts"]["train"]["3"]
    assert summary["counts"]["test"]["other"] == summary["counts"]["test"]["3"]


@pytest.mark.slow
def test_inspect_cli_on_synthetic_fashion_mnist(tmp_path):
    write_torchvision_idx(tmp_path / "data", "FashionMNIST")
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "lit_vision.inspect", "data=fashion_mnist",
                           f"data.root={tmp_path / 'data'}", f"hydra.run.dir={out}",
                           f"paths.cache_dir={tmp_path / 'cache'}"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert all((out / name).is_file() for name in PNGS)
    assert "Ankle boot" in proc.stdout and "pixel mean" in proc.stdout


@pytest.mark.slow
def test_inspect_cli_missing_data_exits_with_the_fix(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "lit_vision.inspect", "data=mnist", f"data.root={tmp_path}",
                           f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1  # missing data: a LitVisionError, not a config error (exit 2)
    assert "data.root" in proc.stdout + proc.stderr
