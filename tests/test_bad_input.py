"""Bad input: every case fails with a message naming the culprit and the fix, and loses nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST
from PIL import Image

from lit_vision.commands.train import run
from lit_vision.config import validate_config
from lit_vision.data.image_folder import load_image_folders
from lit_vision.data.synthetic import write_image_folder
from lit_vision.errors import ConfigError, CorruptImageError, DataNotFoundError
from lit_vision.imaging import MAX_IMAGE_PIXELS
from lit_vision.training.checkpoints import CheckpointError, load_classifier, read_checkpoint
from lit_vision.training.classifier import ImageClassifier, NonFiniteLossError

REPO = Path(__file__).resolve().parents[1]
QUIET = ["~callbacks.progress_bar", "~callbacks.model_summary"]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, "-m", "lit_vision.train", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


# --- image files ------------------------------------------------------------------------------------
@pytest.fixture
def bad_folder(tmp_path: Path) -> Path:
    root = write_image_folder(tmp_path / "train", ["cat", "dog"], per_class=4, size=16)
    (root / "cat" / "empty.png").write_bytes(b"")
    good = (root / "dog" / "0000.png").read_bytes()
    (root / "dog" / "truncated.png").write_bytes(good[: len(good) // 2])
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


def test_zero_byte_truncated_and_non_image_files_are_all_listed(bad_folder: Path) -> None:
    with pytest.raises(CorruptImageError) as err:
        load_image_folders([bad_folder], channels=3, size=None)
    msg = str(err.value)
    assert "2 of 10 files could not be read" in msg  # notes.txt is no image file: skipped, not corrupt
    assert f"{bad_folder / 'cat' / 'empty.png'}: ValueError: empty file (0 bytes)" in msg
    assert str(bad_folder / "dog" / "truncated.png") in msg and "notes.txt" not in msg
    assert "data.skip_corrupt=true" in msg  # the fix


def test_skip_corrupt_keeps_every_good_image_and_logs_the_bad(bad_folder: Path, caplog) -> None:
    arrays = load_image_folders([bad_folder], channels=3, size=None, skip_corrupt=True)
    assert len(arrays.labels) == 8 and np.bincount(arrays.labels).tolist() == [4, 4]  # nothing good lost
    assert "truncated.png" in caplog.text and "empty.png" in caplog.text
    assert "notes.txt" in caplog.text  # named once as a non-image file


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    root = write_image_folder(tmp_path / "train", ["a"], per_class=2, size=16)
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 100  # just over the guard; a flat PNG of it is a few KB on disk
    Image.new("L", (side, side)).save(root / "a" / "bomb.png", optimize=False)
    assert (root / "a" / "bomb.png").stat().st_size < 1_000_000
    with pytest.raises(CorruptImageError, match="decompression-bomb guard") as err:
        load_image_folders([root], channels=3, size=(16, 16))
    assert "bomb.png" in str(err.value)


# --- data roots and label mappings --------------------------------------------------------------------
def test_missing_data_root_says_how_to_get_the_data(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as err:
        run(make_cfg("data=cifar10", f"data.root={tmp_path / 'nowhere'}", *FAST))
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg
    assert "data.root=" in msg and "LIT_VISION_DATA_DIR" in msg and "data.download=true" in msg


@pytest.mark.slow
def test_missing_data_root_cli_exits_1_without_traceback(tmp_path: Path) -> None:
    res = cli("data=mnist", f"data.root={tmp_path / 'nowhere'}", f"hydra.run.dir={tmp_path / 'run'}")
    text = res.stdout + res.stderr
    assert res.returncode == 1 and "No MNIST data at data.root=" in text and "Traceback" not in text


def test_wrong_class_name_in_mapping(make_cfg, cifar_folders: Path) -> None:
    with pytest.raises(ConfigError) as err:
        run(make_cfg("data=cifar_horse", f"data.root={cifar_folders}", "data.mapping.positive=hrose", *FAST))
    assert "['hrose']" in str(err.value) and "horse" in str(err.value) and "data.mapping.positive" in str(err.value)


def test_wrong_class_name_in_subset_mapping(make_cfg, cifar_folders: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown class name\(s\) \['kitten'\]"):
        run(make_cfg("data=cifar10", f"data.root={cifar_folders}", "data.mapping.classes=[cat,kitten]", *FAST))


# --- invalid values --------------------------------------------------------------------------------------
@pytest.mark.parametrize("override,key", [
    ("model.optimizer.lr=-0.001", "model.optimizer.lr"),
    ("model.optimizer.lr=0", "model.optimizer.lr"),
    ("data.val_fraction=0", "data.val_fraction"),
    ("data.val_fraction=1.5", "data.val_fraction"),
    ("data.batch_size=0", "data.batch_size"),
    ("trainer.max_epochs=0", "trainer.max_epochs"),
])
def test_invalid_values_name_the_key(make_cfg, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate_config(make_cfg(override))


@pytest.mark.slow
def test_invalid_value_cli_exits_2_without_traceback(tmp_path: Path) -> None:
    res = cli("model.optimizer.lr=-1", "data.batch_size=0", f"hydra.run.dir={tmp_path / 'run'}")
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "model.optimizer.lr=-1 must be a positive number" in text
    assert "Traceback" not in text and not (tmp_path / "run" / "checkpoints").exists()


# --- training that diverges ------------------------------------------------------------------------------
def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(make_cfg, monkeypatch) -> None:
    """Gradients turn NaN at step 7, so the weights after it are NaN: the step-8 save is refused, the next loss is
    NaN, training stops naming step 8, and last.ckpt still holds the finite step-7 weights."""

    def poison(self, optimizer):
        if self.global_step == 7:
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))

    monkeypatch.setattr(ImageClassifier, "on_before_optimizer_step", poison)
    cfg = make_cfg("model=dense", "accelerator=cpu", "trainer.max_epochs=3", "trainer.limit_train_batches=5",
                   "trainer.limit_val_batches=1", "callbacks.last_checkpoint.every_n_train_steps=1", *QUIET)
    with pytest.raises(NonFiniteLossError, match="at global step 8 \\(epoch 1, batch 3\\)") as err:
        run(cfg)
    assert "model.optimizer.lr" in str(err.value)  # the fix
    out = Path(cfg.paths.output_dir)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 7
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert (out / "checkpoints" / "best.ckpt").exists() and not (out / "metrics.json").exists()
    model = load_classifier(out / "checkpoints" / "last.ckpt")  # still usable
    assert torch.isfinite(model(torch.zeros(1, 1, 8, 8, dtype=torch.uint8))).all()


# --- checkpoints -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dense_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import compose_config

    run_dir = tmp_path_factory.mktemp("dense") / "run"
    cfg = compose_config(["model=dense", "accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                          "trainer.limit_val_batches=1", "test=false", "validate_best=false", *QUIET], run_dir)
    run(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def test_load_classifier_roundtrip(dense_ckpt: Path) -> None:
    model = load_classifier(dense_ckpt)
    assert not model.training and model.class_names == [str(i) for i in range(10)]


@pytest.mark.parametrize("damage,match", [
    (lambda p, good: p.write_bytes(b""), "is empty"),
    (lambda p, good: p.write_bytes(good[: len(good) // 3]), "is damaged or not a PyTorch checkpoint"),
    (lambda p, good: p.write_text("hello"), "is damaged or not a PyTorch checkpoint"),
    (lambda p, good: torch.save({"weights": torch.zeros(2)}, p), "not a Lightning checkpoint"),
    (lambda p, good: torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, p), "not written by lit_vision"),
    (lambda p, good: torch.save({"state_dict": {}, "obj": Path("x")}, p), "not plain data"),
])
def test_damaged_or_foreign_checkpoints_are_refused(dense_ckpt: Path, tmp_path: Path, damage, match: str) -> None:
    path = tmp_path / "bad.ckpt"
    damage(path, dense_ckpt.read_bytes())
    with pytest.raises(CheckpointError, match=match) as err:
        load_classifier(path)
    assert str(path) in str(err.value)


def test_missing_checkpoint_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")


def test_checkpoint_of_another_model_is_refused_before_training(make_cfg, dense_ckpt: Path) -> None:
    cfg = make_cfg("model=cnn", f"ckpt_path={dense_ckpt}", *FAST)
    with pytest.raises(CheckpointError, match="is from another model \\(net mlp") as err:
        run(cfg)
    assert "shape mismatch" in str(err.value) or "missing" in str(err.value)


def test_damaged_checkpoint_on_resume(make_cfg, dense_ckpt: Path, tmp_path: Path) -> None:
    broken = tmp_path / "last.ckpt"
    broken.write_bytes(dense_ckpt.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="damaged"):
        run(make_cfg("model=dense", f"ckpt_path={broken}", *FAST))


# --- model config mistakes, caught before any data is read ---------------------------------------------------
@pytest.mark.parametrize(("override", "named"), [
    ("model.tta.translate=-1", "model.tta.translate=-1"),
    ("model.mix.mixup_alpha=-1", "model.mix.mixup_alpha=-1"),
    ("model.scheduler.name=foo", "model.scheduler.name='foo'"),
    ("model.loss=foo", "model.loss='foo'"),
    ("model.optimizer.name=adamx", "model.optimizer.name='adamx'"),
    ("+model.optimizer.foo=0.9", "does not take ['foo']"),
    ("model.optimizer.lr=0", "model.optimizer.lr=0"),
])
def test_model_config_mistakes_are_refused_before_the_data_is_read(override: str, named: str) -> None:
    """data.root points nowhere: were the data read first, the error would be the missing MNIST files."""
    proc = cli("data=mnist", "data.root=/nonexistent-data-root", override, *QUIET)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line]
    assert len(errors) == 1 and named in errors[0], errors
    assert "nonexistent-data-root" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
