"""Data read once per process (prepare_data/setup idempotent; other DDP ranks read the disk cache rank 0 wrote),
and the data module's defaults and checks stated once."""

from __future__ import annotations

import functools
import inspect
import threading
import time

import numpy as np
import pytest

from lit_vision.commands.train import run
from lit_vision.data import SOURCES, ImageArrays, VisionDataModule
from lit_vision.data import sources as sources_module
from lit_vision.data.cache import cached
from lit_vision.data.synthetic import write_image_folder
from lit_vision.errors import ConfigError
from lit_vision.training.builders import build_datamodule


@pytest.fixture
def digits_loads(monkeypatch) -> list[dict]:
    """Every call of the registered ``digits`` loader, with its arguments."""
    original = SOURCES["digits"]
    calls: list[dict] = []

    @functools.wraps(original)
    def counting(**kwargs):
        calls.append(kwargs)
        return original(**kwargs)

    monkeypatch.setitem(SOURCES, "digits", counting)
    return calls


@pytest.fixture
def decodes(monkeypatch) -> list[int]:
    """Number of files each folder decode (the expensive part of a folder source) was asked for."""
    original = sources_module.decode_files
    calls: list[int] = []

    def counting(paths, *args, **kwargs):
        calls.append(len(paths))
        return original(paths, *args, **kwargs)

    monkeypatch.setattr(sources_module, "decode_files", counting)
    return calls


def test_digits_read_once_through_fit_validate_and_test(make_cfg, digits_loads, monkeypatch):
    prepare_calls: list[int] = []
    original_prepare = VisionDataModule.prepare_data

    def counted_prepare(self):
        prepare_calls.append(1)
        return original_prepare(self)

    monkeypatch.setattr(VisionDataModule, "prepare_data", counted_prepare)
    cfg = make_cfg("data=digits", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                   "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "accelerator=cpu",
                   "~callbacks.progress_bar", "~callbacks.model_summary")
    record = run(cfg)  # build_datamodule, then Trainer.fit, Trainer.validate, Trainer.test
    assert len(prepare_calls) == 4  # build_datamodule + Lightning before fit, validate and test
    assert len(digits_loads) == 1
    assert record["epochs_trained"] == 1 and "test/acc" in record


def test_prepare_data_and_setup_are_idempotent(digits_loads):
    dm = VisionDataModule("digits", channels=1, eval_batch_size=64)
    dm.prepare_data()
    dm.prepare_data()
    dm.setup("fit")
    train = dm.train_set
    dm.setup("validate")
    dm.prepare_data()
    dm.setup("test")
    assert len(digits_loads) == 1 and dm.train_set is train and dm._loaded is None


def test_setup_alone_loads_once(digits_loads):
    dm = VisionDataModule("digits", channels=1, eval_batch_size=64)
    dm.setup("fit")
    dm.setup("test")
    dm.prepare_data()
    assert len(digits_loads) == 1


def test_a_non_zero_local_rank_does_not_decode_in_prepare_data(digits_loads, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    dm = VisionDataModule("digits", channels=1, eval_batch_size=64)
    dm.prepare_data()
    assert digits_loads == []  # digits has no disk cache: this rank reads it in setup
    dm.setup("fit")
    assert len(digits_loads) == 1 and len(dm.train_set) + len(dm.val_set) == 1437


def test_other_ranks_memory_map_the_cache_local_rank_zero_wrote(tmp_path, decodes, monkeypatch):
    root = write_image_folder(tmp_path / "data" / "train", ["a", "b"], per_class=6, size=8).parent
    args = dict(root=str(root), channels=3, cache_dir=str(tmp_path / "cache"), eval_batch_size=8)
    rank0 = VisionDataModule("image_folder", **args)
    rank0.prepare_data()
    assert decodes == [12]
    monkeypatch.setenv("LOCAL_RANK", "1")
    rank1 = VisionDataModule("image_folder", **args)
    rank1.prepare_data()
    rank1.setup("fit")
    assert decodes == [12]  # rank 1 decoded nothing
    rank0.setup("fit")
    np.testing.assert_array_equal(np.asarray(rank0.train_set.images), np.asarray(rank1.train_set.images))


def test_a_process_waiting_on_the_cache_lock_reads_the_cache_instead_of_building_it(tmp_path):
    arrays = ImageArrays(np.arange(2 * 3 * 4 * 4, dtype=np.uint8).reshape(2, 3, 4, 4), np.array([0, 1]), ["a", "b"])
    started, release = threading.Event(), threading.Event()
    second_builds: list[int] = []
    results: dict[str, ImageArrays] = {}

    def slow_build() -> ImageArrays:
        started.set()
        assert release.wait(10)
        return arrays

    def first() -> None:
        results["first"] = cached(tmp_path, "x", {"k": 1}, slow_build)

    def second() -> None:
        results["second"] = cached(tmp_path, "x", {"k": 1}, lambda: second_builds.append(1) or arrays)

    a = threading.Thread(target=first)
    a.start()
    assert started.wait(10)
    b = threading.Thread(target=second)
    b.start()
    time.sleep(0.3)
    assert b.is_alive()  # waiting for the first builder's lock
    release.set()
    a.join(10)
    b.join(10)
    assert second_builds == []
    assert isinstance(results["second"].images, np.memmap)
    np.testing.assert_array_equal(np.asarray(results["second"].images), arrays.images)


# --- defaults and checks stated once ---------------------------------------------------------------------------------
def test_eval_batch_size_default_is_stated_only_in_the_config(make_cfg):
    param = inspect.signature(VisionDataModule).parameters["eval_batch_size"]
    assert param.default is inspect.Parameter.empty and param.kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'eval_batch_size'"):
        VisionDataModule("digits", channels=1)
    dm = build_datamodule(make_cfg("data=digits"))
    assert dm.eval_batch_size == 1024 and dm.val_dataloader().batch_size == 1024
    assert dm.batch_size == 64 and dm.train_dataloader().batch_size == 64


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "data.batch_size=0 must be an integer >= 1; set it with data.batch_size=<value>"),
    ({"batch_size": 2.5}, "data.batch_size=2.5 must be an integer >= 1; set it with data.batch_size=<value>"),
    ({"eval_batch_size": 0},
     "data.eval_batch_size=0 must be an integer >= 1; set it with data.eval_batch_size=<value>"),
    ({"val_fraction": 1.0},
     "data.val_fraction=1.0 must be a number strictly between 0 and 1 (e.g. data.val_fraction=0.1)"),
    ({"val_fraction": "0.2"},
     "data.val_fraction='0.2' must be a number strictly between 0 and 1 (e.g. data.val_fraction=0.1)"),
])
def test_the_module_checks_its_values_before_reading_any_data(digits_loads, kwargs, message):
    dm = VisionDataModule("digits", channels=1, **{"eval_batch_size": 64, **kwargs})
    with pytest.raises(ConfigError) as err:
        dm.prepare_data()
    assert str(err.value) == message and digits_loads == []


def test_the_module_check_reaches_a_hydra_user_as_a_config_error(make_cfg, digits_loads):
    with pytest.raises(ConfigError, match=r"^data\.eval_batch_size=0 must be an integer >= 1"):
        build_datamodule(make_cfg("data=digits", "data.eval_batch_size=0"))
    assert digits_loads == []
