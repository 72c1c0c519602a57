"""CIFAR sources in both layouts, the horse mapping, the seeded split, the cache and batched augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_vision.data import VisionDataModule, load_source
from lit_vision.data.augment import AugmentConfig, augment_batch, batch_random_crop
from lit_vision.data.mapping import one_vs_rest
from lit_vision.data.split import stratified_split
from lit_vision.data.synthetic import CIFAR_CLASSES
from lit_vision.errors import ConfigError, DataNotFoundError


@pytest.mark.parametrize("fixture, n_train, n_test", [("cifar_folders", 80, 40), ("cifar_batches", 100, 30)])
def test_cifar_layout_is_detected(request, tmp_path, fixture, n_train, n_test):
    root = request.getfixturevalue(fixture)
    splits = load_source("cifar10", root=str(root), cache_dir=str(tmp_path / "cache"))
    assert splits.train.images.shape == (n_train, 3, 32, 32) and splits.train.images.dtype == np.uint8
    assert len(splits.test) == n_test
    assert splits.train.class_names == CIFAR_CLASSES
    assert np.bincount(splits.train.labels).tolist() == [n_train // 10] * 10


def test_folder_cache_is_reused_and_memory_mapped(cifar_folders, tmp_path):
    cache = tmp_path / "cache"
    first = load_source("cifar10", root=str(cifar_folders), cache_dir=str(cache))
    files = sorted(p.name for p in cache.iterdir())
    second = load_source("cifar10", root=str(cifar_folders), cache_dir=str(cache))
    assert sorted(p.name for p in cache.iterdir()) == files  # nothing rebuilt
    assert isinstance(second.train.images, np.memmap)
    np.testing.assert_array_equal(np.asarray(first.train.images), np.asarray(second.train.images))


def test_missing_root_says_how_to_fix(tmp_path):
    with pytest.raises(DataNotFoundError, match="data.root=.*cifar10-jpeg"):
        load_source("cifar10", root=str(tmp_path / "nowhere"))


def test_horse_vs_rest_mapping():
    labels = np.arange(10).repeat(3)
    binary, names = one_vs_rest(labels, CIFAR_CLASSES, "horse", "not_horse")
    assert names == ["not_horse", "horse"]
    assert binary.sum() == 3 and set(np.flatnonzero(binary)) == {21, 22, 23}
    with pytest.raises(ConfigError, match="'hors'.*airplane"):
        one_vs_rest(labels, CIFAR_CLASSES, "hors")


def test_split_is_seeded_stratified_and_disjoint():
    labels = np.repeat(np.arange(4), [50, 30, 15, 5])
    a_train, a_val = stratified_split(labels, 0.2, seed=7)
    b_train, b_val = stratified_split(labels, 0.2, seed=7)
    c_train, c_val = stratified_split(labels, 0.2, seed=8)
    np.testing.assert_array_equal(a_val, b_val)
    assert not np.array_equal(a_val, c_val)
    assert set(a_train).isdisjoint(a_val) and len(a_train) + len(a_val) == len(labels)
    assert np.bincount(labels[a_val]).tolist() == [10, 6, 3, 1]
    with pytest.raises(ConfigError, match="val_fraction"):
        stratified_split(labels, 1.5, 0)


def test_datamodule_horse_split_and_batches(cifar_folders, tmp_path):
    dm = VisionDataModule(source="cifar10", root=str(cifar_folders), mapping={"positive": "horse"},
                          val_fraction=0.25, batch_size=16, eval_batch_size=64, cache_dir=str(tmp_path / "c"), seed=3)
    dm.setup("fit")
    assert dm.class_names == ["not_horse", "horse"]
    assert len(dm.val_set) == 20 and dm.val_set.labels.sum() == 2  # stratified: 10% positives kept
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 4  # 60 train images / 16, batch-at-a-time
    again = VisionDataModule(source="cifar10", root=str(cifar_folders), mapping={"positive": "horse"},
                             val_fraction=0.25, eval_batch_size=64, cache_dir=str(tmp_path / "c"), seed=3)
    again.setup("fit")
    assert dm.val_set.sources == again.val_set.sources


def test_batched_augmentation_preserves_shape_and_content():
    x = torch.rand(8, 3, 32, 32)
    cropped = batch_random_crop(x, 4)
    assert cropped.shape == x.shape
    assert not torch.equal(cropped, x)  # 8 random translations: at least one moves
    out = augment_batch(x, AugmentConfig(crop_padding=0, hflip=True))
    for i in range(8):  # each image is either itself or its mirror
        assert torch.equal(out[i], x[i]) or torch.equal(out[i], x[i].flip(-1))
    # a pure translation keeps the pixels of the central region
    y = batch_random_crop(torch.arange(16.).view(1, 1, 4, 4), 1)
    assert y.shape == (1, 1, 4, 4)
