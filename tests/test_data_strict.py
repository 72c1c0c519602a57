"""Nothing silently ignored: every source honours data.channels and data.image_size (or refuses them by name),
invalid sizes and unknown source_args are ConfigErrors naming the key, and resized caches are keyed by size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_vision.data import SOURCES, ImageArrays, SourceSplits, VisionDataModule, load_source
from lit_vision.data.image_folder import decode_image
from lit_vision.data.synthetic import (
    FER_CLASSES,
    write_cifar_batches,
    write_fer_folders,
    write_image_folder,
    write_torchvision_idx,
)
from lit_vision.errors import ConfigError
from lit_vision.training.builders import build_datamodule


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("strict")
    write_torchvision_idx(base / "idx", "MNIST")
    write_torchvision_idx(base / "idx", "FashionMNIST", seed=5)
    write_cifar_batches(base / "batches")
    write_image_folder(base / "folders" / "train", ["a", "b"], per_class=3, size=32)
    write_image_folder(base / "folders" / "test", ["a", "b"], per_class=2, size=32, seed=1)
    write_fer_folders(base / "fer", train={c: 2 for c in FER_CLASSES}, test={c: 1 for c in FER_CLASSES})
    return {"idx": base / "idx", "batches": base / "batches", "folders": base / "folders", "fer": base / "fer"}


def _args(source: str, roots: dict[str, Path], tmp_path: Path) -> dict:
    return {"digits": {},
            "mnist": {"root": str(roots["idx"])},
            "fashion_mnist": {"root": str(roots["idx"])},
            "cifar10_batches": {"root": str(roots["batches"])},
            "cifar10_folders": {"root": str(roots["folders"]), "cache_dir": str(tmp_path / "cache")},
            "fer2013": {"root": str(roots["fer"]), "cache_dir": str(tmp_path / "cache")},
            "image_folder": {"root": str(roots["folders"]), "cache_dir": str(tmp_path / "cache")}}[source]


ALL = ["digits", "mnist", "fashion_mnist", "cifar10_batches", "cifar10_folders", "fer2013", "image_folder"]


@pytest.mark.parametrize("case", ALL)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_source_honours_image_size_and_channels(roots, tmp_path, case, channels):
    source = case.split("_batches")[0].split("_folders")[0]
    splits = load_source(source, channels=channels, image_size=[14, 10], **_args(case, roots, tmp_path))
    assert splits.train.images.shape[1:] == (channels, 14, 10)
    assert splits.test.images.shape[1:] == (channels, 14, 10)
    assert splits.train.images.dtype == np.uint8


def test_array_sources_resize_exactly_like_the_folder_loader(roots, tmp_path):
    """MNIST (1 channel) and CIFAR batches (3 channels) resized in memory == the same pixels as a PNG decoded by
    the folder loader's decode_image at that size (one resampling for the whole project)."""
    for source, root, channels in (("mnist", roots["idx"], 1), ("cifar10", roots["batches"], 3)):
        native = load_source(source, root=str(root), channels=channels).train.images
        resized = load_source(source, root=str(root), channels=channels, image_size=[14, 11]).train.images
        assert resized.shape == (len(native), channels, 14, 11)
        for i in (0, len(native) - 1):
            png = tmp_path / f"{source}{i}.png"
            pixels = native[i, 0] if channels == 1 else native[i].transpose(1, 2, 0)
            Image.fromarray(np.ascontiguousarray(pixels)).save(png)
            np.testing.assert_array_equal(resized[i], decode_image(png, channels, (14, 11)))


@pytest.mark.parametrize("overrides,shape", [
    (("data=digits", "data.image_size=[16,16]"), (1, 16, 16)),
    (("data=digits", "data.image_size=12", "data.channels=3"), (3, 12, 12)),
    (("data=mnist", "data.image_size=[14,14]"), (1, 14, 14)),
    (("data=fashion_mnist", "data.image_size=[14,14]", "data.channels=3"), (3, 14, 14)),
])
def test_config_image_size_and_channels_are_honoured(make_cfg, roots, overrides, shape):
    dm = build_datamodule(make_cfg(*overrides, f"data.root={roots['idx']}" if "mnist" in overrides[0] else
                                   "data.root=null"))
    assert dm.channels == shape[0] and dm.image_size == list(shape[1:])
    for arrays in (dm.train_set, dm.val_set, dm.test_set):
        assert arrays.images.shape[1:] == shape
    x, _ = next(iter(dm.train_dataloader()))
    assert tuple(x.shape[1:]) == shape


@pytest.mark.parametrize("data,channels,size", [
    ("digits", 1, [8, 8]), ("mnist", 1, [28, 28]), ("fashion_mnist", 1, [28, 28]), ("cifar10", 3, [32, 32]),
    ("cifar_horse", 3, [32, 32]), ("fer2013", 1, [48, 48]), ("fer_happy_sad", 3, [48, 48]),
])
def test_data_configs_keep_their_channels_and_size(make_cfg, synthetic_roots, data, channels, size):
    extra = [f"data.root={synthetic_roots[data]}"] if data in synthetic_roots else []
    extra += ["data.mapping.per_class=null"] if data == "fer_happy_sad" else []  # the synthetic data is smaller
    cfg = make_cfg(f"data={data}", *extra)
    assert cfg.data.channels == channels and list(cfg.data.image_size) == size
    dm = build_datamodule(cfg)
    assert dm.channels == channels and dm.image_size == size
    assert dm.train_set.images.shape[1:] == (channels, *size)


@pytest.mark.parametrize("value", ["[0,0]", "[-1,8]", "[8]", "[8,8,8]", "0", "[8.5,8]", "true", "abc"])
def test_invalid_image_size_is_a_config_error_naming_the_key(make_cfg, value):
    with pytest.raises(ConfigError, match=r"data\.image_size=.* is invalid: give \[H, W\] with two positive integers"):
        build_datamodule(make_cfg("data=digits", f"data.image_size={value}"))


@pytest.mark.parametrize("source", ["digits", "mnist", "cifar10", "fer2013", "image_folder"])
def test_invalid_image_size_is_refused_by_every_loader(source, tmp_path):
    with pytest.raises(ConfigError, match=r"data\.image_size=\[0, 0\] is invalid"):
        load_source(source, image_size=[0, 0], **({} if source == "digits" else {"root": str(tmp_path)}))


@pytest.mark.parametrize("value", ["2", "0", "4"])
def test_invalid_channels_is_a_config_error_naming_the_key(make_cfg, value):
    with pytest.raises(ConfigError, match=rf"data\.channels={value} is invalid: use data\.channels=1 .* or "
                                          r"data\.channels=3"):
        build_datamodule(make_cfg("data=digits", f"data.channels={value}"))


def test_unknown_source_args_key_is_refused_with_the_accepted_ones(make_cfg):
    with pytest.raises(ConfigError) as err:
        build_datamodule(make_cfg("data=digits", "+data.source_args.test_fractoin=0.5"))
    assert str(err.value) == ("data.source_args.test_fractoin is not an argument of data.source=digits; the accepted "
                              "source_args are ['test_fraction']. Fix the name or remove it.")


def test_source_args_on_a_source_that_takes_none_is_refused(make_cfg, synthetic_roots):
    with pytest.raises(ConfigError, match=r"data\.source_args\.train_dirs is not an argument of "
                                          r"data\.source=fer2013; it takes no source_args \(data\.source_args=\{\}\)"):
        build_datamodule(make_cfg("data=fer2013", f"data.root={synthetic_roots['fer2013']}",
                                  "+data.source_args.train_dirs=[x]"))


def test_source_args_may_not_shadow_a_data_setting(make_cfg):
    with pytest.raises(ConfigError, match=r"data\.source_args\.channels: .*set data\.channels instead"):
        build_datamodule(make_cfg("data=digits", "+data.source_args.channels=3"))


@pytest.mark.parametrize("overrides,key", [
    (("data=digits", "data.root=/somewhere"), "data.root='/somewhere'"),
    (("data=digits", "data.download=true"), "data.download=True"),
    (("data=digits", "data.skip_corrupt=true"), "data.skip_corrupt=True"),
    (("data=mnist", "data.skip_corrupt=true"), "data.skip_corrupt=True"),
    (("data=fer2013", "data.download=true"), "data.download=True"),
])
def test_data_settings_a_source_does_not_use_are_refused(make_cfg, overrides, key):
    source = overrides[0].split("=")[1]
    with pytest.raises(ConfigError, match=rf"^{key} is not used by data\.source={source}; remove it"):
        build_datamodule(make_cfg(*overrides))


def test_test_fraction_errors_name_their_own_key():
    with pytest.raises(ConfigError, match=r"^data\.source_args\.test_fraction=1\.5 must be a number strictly"):
        load_source("digits", test_fraction=1.5)


def test_load_source_refuses_arguments_the_loader_does_not_declare():
    with pytest.raises(ConfigError) as err:
        load_source("digits", channels=1, colour="red")
    assert str(err.value) == ("data.source='digits' does not take ['colour']; it accepts "
                              "['channels', 'image_size', 'seed', 'test_fraction']")


def test_image_folder_refuses_root_and_train_dirs_together(roots):
    with pytest.raises(ConfigError, match=r"both data\.root=.* and data\.source_args\.train_dirs; set one"):
        load_source("image_folder", root=str(roots["folders"]), train_dirs=[str(roots["folders"] / "train")])


def test_a_loader_that_ignores_channels_or_size_is_caught(monkeypatch):
    def gray_8x8(seed: int = 0) -> SourceSplits:  # declares neither channels nor image_size
        images = np.zeros((20, 1, 8, 8), dtype=np.uint8)
        return SourceSplits(train=ImageArrays(images, np.arange(20) % 2, ["a", "b"]))

    monkeypatch.setitem(SOURCES, "gray_8x8", gray_8x8)
    dm = VisionDataModule("gray_8x8", channels=3, eval_batch_size=8)
    with pytest.raises(ConfigError, match=r"gave 1-channel train images, but data\.channels=3; set data\.channels=1"):
        dm.setup()
    dm = VisionDataModule("gray_8x8", channels=1, image_size=[4, 4], eval_batch_size=8)
    with pytest.raises(ConfigError, match=r"^data\.image_size=\[4, 4\] is not used by data\.source=gray_8x8"):
        dm.setup()
    dm = VisionDataModule("gray_8x8", channels=1, eval_batch_size=8)
    dm.setup()
    assert dm.image_size == [8, 8]


def test_resized_folder_cache_is_keyed_by_size_even_for_dotted_folder_names(tmp_path):
    root = write_image_folder(tmp_path / "my.data" / "train", ["a", "b"], per_class=3, size=32).parent
    cache = tmp_path / "cache"
    big = load_source("image_folder", root=str(root), image_size=[16, 16], cache_dir=str(cache))
    small = load_source("image_folder", root=str(root), image_size=[8, 8], cache_dir=str(cache))
    again = load_source("image_folder", root=str(root), image_size=[16, 16], cache_dir=str(cache))
    assert big.train.images.shape == (6, 3, 16, 16) and small.train.images.shape == (6, 3, 8, 8)
    assert isinstance(again.train.images, np.memmap) and again.train.images.shape == (6, 3, 16, 16)
    assert len(list(cache.glob("*.meta.json"))) == 2


@pytest.mark.parametrize("source", ["mnist", "fashion_mnist", "cifar10", "fer2013"])
def test_a_source_that_needs_a_root_says_so(source):
    with pytest.raises(ConfigError, match=rf"^data\.source={source} needs data\.root \(the folder holding the data"):
        load_source(source)
