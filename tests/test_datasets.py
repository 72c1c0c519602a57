"""Every data source on synthetic files in its real on-disk layout, plus a few batches of the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_vision.data.sources import load_source
from lit_vision.data.synthetic import FER_CLASSES, write_class_images, write_fer_folders, write_torchvision_idx
from lit_vision.errors import ConfigError, CorruptImageError, DataNotFoundError
from lit_vision.training.builders import build_datamodule

TV_FOLDERS = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}


@pytest.fixture(scope="module")
def idx_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("idx")
    written = {name: write_torchvision_idx(root, folder, seed=i) for i, (name, folder) in enumerate(TV_FOLDERS.items())}
    return root, written


@pytest.fixture(scope="module")
def fer_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    counts = {c: 4 + i for i, c in enumerate(FER_CLASSES)}
    return write_fer_folders(tmp_path_factory.mktemp("fer"), train=counts, test={c: 2 for c in FER_CLASSES})


# --- MNIST / Fashion-MNIST (torchvision IDX layout) ----------------------------------------------------------------
@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_idx_sources_read_back_the_written_pixels(idx_root, source):
    root, written = idx_root
    splits = load_source(source, root=str(root), channels=1)
    for split, arrays in (("train", splits.train), ("test", splits.test)):
        images, labels = written[source][split]
        assert arrays.images.shape == (len(labels), 1, 28, 28) and arrays.images.dtype == np.uint8
        np.testing.assert_array_equal(arrays.images[:, 0], images)
        np.testing.assert_array_equal(arrays.labels, labels)
        assert len(arrays.class_names) == 10
    assert splits.val is None


def test_fashion_class_names_are_the_clothing_names(idx_root):
    root, _ = idx_root
    names = load_source("fashion_mnist", root=str(root)).train.class_names
    assert names[0] == "T-shirt/top" and names[9] == "Ankle boot"


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_idx_root_may_point_at_the_dataset_folder_itself_and_give_three_channels(idx_root, source):
    root, written = idx_root
    splits = load_source(source, root=str(root / TV_FOLDERS[source]), channels=3)
    assert splits.train.images.shape[1] == 3
    np.testing.assert_array_equal(splits.train.images[:, 2], written[source]["train"][0])


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist"])
def test_idx_missing_root_names_the_path_and_the_fix(tmp_path, source):
    with pytest.raises(DataNotFoundError) as err:
        load_source(source, root=str(tmp_path / "nowhere"))
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "data.root" in msg and "data.download=true" in msg


def test_idx_incomplete_raw_folder_is_reported(tmp_path):
    write_torchvision_idx(tmp_path, "MNIST")
    (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataNotFoundError, match="MNIST"):
        load_source("mnist", root=str(tmp_path))


@pytest.mark.parametrize("data", ["mnist", "fashion_mnist"])
def test_idx_data_configs_build_train_val_test(make_cfg, idx_root, data):
    root, _ = idx_root
    dm = build_datamodule(make_cfg(f"data={data}", f"data.root={root}", "data.val_fraction=0.2"))
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (48, 12, 30)
    assert dm.channels == 1 and dm.image_size == [28, 28] and dm.num_classes == 10


# --- FER2013 (Kaggle folders) ------------------------------------------------------------------------------------
def test_fer2013_reads_seven_emotions_as_gray_48(fer_root, tmp_path):
    splits = load_source("fer2013", root=str(fer_root), cache_dir=str(tmp_path / "cache"))
    assert splits.train.class_names == FER_CLASSES
    assert splits.train.class_counts() == {c: 4 + i for i, c in enumerate(FER_CLASSES)}
    assert splits.test.class_counts() == {c: 2 for c in FER_CLASSES}
    assert splits.train.images.shape[1:] == (1, 48, 48)
    assert all(Path(p).is_file() for p in splits.train.sources)


def test_fer2013_as_three_channels_repeats_the_gray_plane(fer_root, tmp_path):
    splits = load_source("fer2013", root=str(fer_root), channels=3, cache_dir=str(tmp_path / "cache"))
    x = splits.train.images
    assert x.shape[1] == 3
    np.testing.assert_array_equal(x[:, 0], x[:, 1])
    np.testing.assert_array_equal(x[:, 1], x[:, 2])


def test_fer2013_missing_root(tmp_path):
    with pytest.raises(DataNotFoundError, match="msambare"):
        load_source("fer2013", root=str(tmp_path))


def test_fer_happy_sad_config_maps_balances_and_splits(make_cfg, fer_root):
    # synthetic train: happy 7, sad 9 → balanced 7 per class; test 2 per class; per_class caps off (null)
    dm = build_datamodule(make_cfg("data=fer_happy_sad", f"data.root={fer_root}", "data.mapping.per_class=null"))
    dm.setup("fit")
    assert dm.class_names == ["sad", "happy"] and dm.channels == 3
    train, val = dm.train_set.class_counts(), dm.val_set.class_counts()
    assert {k: train[k] + val[k] for k in train} == {"sad": 7, "happy": 7}
    assert len(dm.val_set) == 3  # a seeded, stratified 20% of the 14 balanced train images
    assert dm.test_set.class_counts() == {"sad": 2, "happy": 2}
    assert dm.class_weights() is None


def test_fer_happy_sad_weighted_keeps_everything_and_weights_the_loss(make_cfg, fer_root):
    dm = build_datamodule(make_cfg("data=fer_happy_sad_weighted", f"data.root={fer_root}"))
    dm.setup("fit")
    train, val = dm.train_set.class_counts(), dm.val_set.class_counts()
    assert {k: train[k] + val[k] for k in train} == {"sad": 9, "happy": 7}
    weights = dm.class_weights()
    assert weights is not None and weights[1] > weights[0]  # happy is the minority here


# --- image folders -----------------------------------------------------------------------------------------------
def _folder(root: Path, classes=("cat", "dog"), n=4, size=16, mode="RGB", seed=0) -> Path:
    for i, c in enumerate(classes):
        write_class_images(root / c, n, i, size, mode=mode, seed=seed, ext="png")
    return root


def test_image_folder_concatenates_train_dirs_with_val_and_test(tmp_path):
    dirs = [_folder(tmp_path / f"train{i}", seed=i) for i in range(3)]
    val, test = _folder(tmp_path / "val", n=2), _folder(tmp_path / "test", n=3)
    splits = load_source("image_folder", train_dirs=[str(d) for d in dirs], val_dir=str(val), test_dir=str(test),
                         channels=3, cache_dir=str(tmp_path / "cache"))
    assert splits.train.class_counts() == {"cat": 12, "dog": 12}
    assert len(splits.val) == 4 and len(splits.test) == 6
    assert splits.train.images.shape[1:] == (3, 16, 16)
    assert {Path(p).parts[-3] for p in splits.train.sources} == {"train0", "train1", "train2"}


def test_image_folder_mixes_gray_and_rgb_files_into_the_configured_channels(tmp_path):
    root = tmp_path / "mixed"
    write_class_images(root / "a", 3, 0, 16, mode="L", ext="png")
    write_class_images(root / "b", 3, 1, 16, mode="RGB", ext="png")
    for channels in (1, 3):
        splits = load_source("image_folder", train_dirs=str(root), channels=channels)
        assert splits.train.images.shape == (6, channels, 16, 16)


def test_image_folder_resizes_to_image_size_and_refuses_mixed_sizes_without_it(tmp_path):
    root = tmp_path / "sizes"
    write_class_images(root / "a", 2, 0, 16, mode="RGB", ext="png")
    write_class_images(root / "b", 2, 1, 24, mode="RGB", ext="png")
    with pytest.raises(ConfigError, match="data.image_size"):
        load_source("image_folder", train_dirs=str(root))
    splits = load_source("image_folder", train_dirs=str(root), image_size=[20, 12])
    assert splits.train.images.shape == (4, 3, 20, 12)


def test_image_folder_reports_every_corrupt_file_by_path(tmp_path):
    root = _folder(tmp_path / "train")
    bad_jpg = root / "cat" / "broken.jpg"
    bad_jpg.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    notes = root / "dog" / "notes.txt"
    notes.write_text("not an image")
    (root / "dog" / "empty.png").write_bytes(b"")
    with pytest.raises(CorruptImageError) as err:
        load_source("image_folder", train_dirs=str(root))
    msg = str(err.value)
    assert "2 of 10 files" in msg  # notes.txt has no image extension: not read, so not corrupt
    for path in (bad_jpg, root / "dog" / "empty.png"):
        assert str(path) in msg
    assert str(notes) not in msg
    assert "data.skip_corrupt=true" in msg


def test_image_folder_skip_corrupt_trains_without_them_and_logs_them(tmp_path, caplog):
    root = _folder(tmp_path / "train")
    bad = root / "cat" / "broken.png"
    bad.write_bytes(b"garbage")
    splits = load_source("image_folder", train_dirs=str(root), skip_corrupt=True)
    assert splits.train.class_counts() == {"cat": 4, "dog": 4}
    assert str(bad) not in splits.train.sources
    assert str(bad) in caplog.text


def test_image_folder_root_layout_and_config(make_cfg, tmp_path):
    _folder(tmp_path / "data" / "train", n=10)
    _folder(tmp_path / "data" / "test", n=2)
    dm = build_datamodule(make_cfg("data=image_folder", f"data.root={tmp_path / 'data'}", "data.channels=1",
                                   "data.image_size=[8,8]", "data.val_fraction=0.25"))
    dm.setup("fit")
    assert dm.class_names == ["cat", "dog"] and dm.channels == 1 and dm.image_size == [8, 8]
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (15, 5, 4)


def test_image_folder_without_any_folder_is_a_config_error():
    with pytest.raises(ConfigError, match="train_dirs"):
        load_source("image_folder")


def test_image_folder_extra_class_in_a_later_train_dir_is_named(tmp_path):
    a = _folder(tmp_path / "a")
    b = _folder(tmp_path / "b", classes=("cat", "dog", "bird"))
    with pytest.raises(DataNotFoundError, match="bird"):
        load_source("image_folder", train_dirs=[str(a), str(b)])


def test_digits_source_is_offline_and_8x8():
    splits = load_source("digits", channels=1)
    assert splits.train.images.shape[1:] == (1, 8, 8) and len(splits.train) + len(splits.test) == 1797


# --- the real data in ../shared/datasets: a few batches each ------------------------------------------------------
def _first_batch(dm) -> tuple:
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    return x, y


@pytest.mark.slow
@pytest.mark.parametrize("data,folder,shape,n", [("mnist", "", (1, 28, 28), 60000),
                                                 ("fashion_mnist", "", (1, 28, 28), 60000)])
def test_real_idx_datasets(make_cfg, shared_datasets, data, folder, shape, n):
    dm = build_datamodule(make_cfg(f"data={data}", f"data.root={shared_datasets / folder}", "data.batch_size=64"))
    x, y = _first_batch(dm)
    assert tuple(x.shape) == (64, *shape) and x.dtype.is_floating_point is False
    assert len(dm.train_set) + len(dm.val_set) == n and len(dm.test_set) == 10000
    assert set(dm.train_set.class_counts().values()) != {0}


@pytest.mark.slow
def test_real_fer_happy_sad_reproduces_the_notebook_sizes(make_cfg, shared_datasets):
    dm = build_datamodule(make_cfg("data=fer_happy_sad", f"data.root={shared_datasets / 'fer2013'}",
                                   "data.batch_size=32"))
    x, y = _first_batch(dm)
    assert tuple(x.shape) == (32, 3, 48, 48)
    train, val = dm.train_set.class_counts(), dm.val_set.class_counts()
    assert {k: train[k] + val[k] for k in train} == {"sad": 4818, "happy": 4818}
    assert (len(dm.train_set), len(dm.val_set)) == (7708, 1928)
    assert dm.test_set.class_counts() == {"sad": 302, "happy": 302}


@pytest.mark.slow
@pytest.mark.parametrize("folder,classes", [("fer2013/test", 7), ("cifar10-jpeg/test", 10)])
def test_real_image_folders_read_a_few_batches(make_cfg, shared_datasets, folder, classes):
    dm = build_datamodule(make_cfg("data=image_folder", f"data.source_args.train_dirs=[{shared_datasets / folder}]",
                                   "data.channels=3", "data.batch_size=128"))
    dm.setup("fit")
    assert dm.num_classes == classes
    for _, (x, y) in zip(range(3), dm.train_dataloader()):
        assert x.shape[0] == 128 and x.shape[1] == 3 and int(y.max()) < classes
