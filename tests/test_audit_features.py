"""The near-duplicate search's instance features: a net's activation maps at every scale, pooled, normalised and
whitened."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_vision.auditing.features import (
    POOLED_VALUES,
    _first_and_last_per_size,
    instance_features,
    pooled_grid,
    whitened,
)
from lit_vision.training.checkpoints import load_classifier


@pytest.mark.parametrize("channels, size, grid", [(24, 31, 6), (64, 16, 4), (256, 8, 2), (256, 4, 2), (2048, 7, 1),
                                                  (3, 2, 2)])
def test_each_map_is_pooled_to_at_most_the_budget(channels: int, size: int, grid: int) -> None:
    assert pooled_grid(channels, size, size) == grid
    assert channels * grid * grid <= POOLED_VALUES or grid == 1


def test_the_first_and_last_map_of_each_size_are_kept_in_order() -> None:
    t = [torch.full((1, 1), float(i)) for i in range(6)]
    maps = [((32, 32), t[0]), ((16, 16), t[1]), ((16, 16), t[2]), ((16, 16), t[3]), ((8, 8), t[4]), ((8, 8), t[5])]
    assert [int(x.item()) for x in _first_and_last_per_size(maps)] == [0, 1, 3, 4, 5]


@pytest.fixture(scope="module")
def convnet(cnn_run):
    return load_classifier(cnn_run / "checkpoints" / "best.ckpt", map_location="cpu")


def test_a_shifted_copy_is_the_nearest_image_in_the_instance_features(convnet) -> None:
    rng = np.random.default_rng(0)
    size = convnet.hparams.input_spec["image_size"]
    images = rng.integers(0, 256, (40, 3, *size), dtype=np.uint8)
    copy = np.roll(images[11], 1, axis=2)[None]  # moved down a pixel
    feats = instance_features(convnet, images, batch_size=16)
    query = instance_features(convnet, copy)
    relu_maps = [m for m in convnet.net.modules() if isinstance(m, torch.nn.ReLU)]
    assert feats.shape[0] == 40 and feats.shape[1] > 0 and relu_maps
    assert int(np.argmin(np.linalg.norm(feats - query, axis=1))) == 11
    np.testing.assert_allclose(instance_features(convnet, images[:5], batch_size=2), feats[:5], rtol=1e-4, atol=1e-5)
    assert all(not m._forward_hooks for m in convnet.net.modules())  # the hooks are removed again


def test_whitening_makes_the_reference_split_uncorrelated_with_unit_spread() -> None:
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(6, 20))
    train = rng.normal(size=(500, 6)) * [10, 5, 2, 1, 0.5, 0.1] @ mixing
    test = rng.normal(size=(50, 6)) @ mixing
    out = whitened({"train": train, "test": test}, dims=4)
    assert out["train"].shape == (500, 4) and out["test"].shape == (50, 4)
    np.testing.assert_allclose(np.cov(out["train"].T), np.eye(4), atol=0.05)
    again = whitened({"train": train, "test": test}, dims=4)
    np.testing.assert_array_equal(again["test"], out["test"])  # seeded: the same every time
    assert whitened({"train": train}, dims=100)["train"].shape == (500, 6)  # no more directions than the data has
