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

from lit_vision.commands.train import check_options, run
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
    res = cli("model.optimizer.lr=-1", f"hydra.run.dir={tmp_path / 'run'}")
    text = res.stdout + res.stderr
    assert res.returncode == 2 and "model.optimizer.lr=-1 must be a positive number" in text
    assert "Traceback" not in text and not (tmp_path / "run" / "checkpoints").exists()


# --- training that diverges ------------------------------------------------------------------------------
def test_nan_stops_with_the_step_and_keeps_the_last_good_checkpoint(make_cfg, monkeypatch) -> None:
    """Gradients turn NaN at step 7, so the weights after it are NaN: the step-8 save is refused, the losses from
    step 8 on are NaN, and training stops at the next check of the epoch's loss sum — the logging steps and epoch
    ends read it, not every step (training/device_reads.py); here the logging step at global step 9 — naming the
    steps since the last check; last.ckpt still holds the finite step-7 weights."""

    def poison(self, optimizer):
        if self.global_step == 7:
            for p in self.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))

    monkeypatch.setattr(ImageClassifier, "on_before_optimizer_step", poison)
    cfg = make_cfg("model=dense", "accelerator=cpu", "trainer.max_epochs=3", "trainer.limit_train_batches=5",
                   "trainer.limit_val_batches=1", "callbacks.last_checkpoint.every_n_train_steps=1", *QUIET)
    with pytest.raises(NonFiniteLossError, match="between global steps 5 and 9 \\(epoch 1\\)") as err:
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


# --- every value that needs no data, refused before any data is read (every command) ---------------------------
@pytest.fixture
def no_data_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any read of a data source fails the test: the refusal must come first."""
    from lit_vision.data import datamodule

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("data was read before the config mistake was refused")

    monkeypatch.setattr(datamodule, "load_source", refuse)
    monkeypatch.setattr(datamodule.VisionDataModule, "prepare_data", refuse)
    monkeypatch.setattr(datamodule.VisionDataModule, "setup", refuse)


def refused_line(caplog: pytest.LogCaptureFixture, run_fn, cfg, check=None, code: int = 2) -> str:
    """Run one job through the shared runner; it must exit ``code`` with exactly one error line, which is returned."""
    from lit_vision.commands.runner import execute

    with pytest.raises(SystemExit) as exit_info:
        execute(run_fn, cfg, check)
    assert exit_info.value.code == code
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.mark.parametrize(("override", "named"), [
    # model: recipes, schedule, optimizer, loss, net blocks (dry-built on the meta device), input spec
    ("model.tta.translate=-1", "model.tta.translate=-1"),
    ("model.tta.hflip=maybe", "model.tta.hflip='maybe'"),
    ("model.mix.mixup_alpha=-1", "model.mix.mixup_alpha=-1"),
    ("model.scheduler.name=foo", "model.scheduler.name='foo'"),
    ("model.scheduler.name=cosine +model.scheduler.foo=1", "model.scheduler: cosine does not take one of ['foo']"),
    ("model.scheduler.name=plateau +model.scheduler.factor=2", "model.scheduler={'name': 'plateau', 'factor': 2}"),
    ("model.optimizer.name=sgd +model.optimizer.momentum=-1", "Invalid momentum value: -1"),
    ("model.label_smoothing=2", "model.label_smoothing=2"),
    ("model.loss=mse model.label_smoothing=0.1", "not applied by model.loss=mse"),
    ("model.optimizer.name=adam +model.optimizer.betas=[2,0.9]", "model.optimizer={'name': 'adam'"),
    ("model.scheduler.name=none +model.scheduler.factor=0.5", "takes no other keys, got ['factor']"),
    ("model.scheduler.name=warmup_cosine +model.scheduler.warmup_fraction=2", "model.scheduler.warmup_fraction=2"),
    ("model.compile=maybe", "model.compile='maybe'"),
    ("model.channels_last=maybe", "model.channels_last='maybe'"),
    ("model.ema_decay=2", "model.ema_decay=2"),
    ("model.normalize=foo", "model.normalize='foo'"),
    ("model.normalize={mean:[0.5,0.5],std:[1,1]}", "model.normalize="),
    ("model.input_size=-3", "model.input_size=-3"),
    ("model.net.init=foo", "model.net.init='foo'"),
    ("model.net.name=foo", "model.net.name='foo'"),
    ("+model.net.foo=1", "does not take ['foo']"),
    ("model.net.head.dropout=2", "model.net.head.dropout=2"),
    ("model.net.features.0.conv=0", "model.net.features.0.conv=0"),
    ("model.net.features.2.pool=0", "model.net.features.2.pool=0"),
    ("model.net.features=[{conv:32,act:relux}]", "model.net.features.0.act='relux'"),
    ("model.net.features=[{conv:32,kernal:3}]", "['kernal']"),
    ("model.net.features=[{conv:8},{pool:2},{pool:2},{pool:2},{pool:2}]", "do not fit 8x8 inputs"),
    ("model.loss=bce data.mapping.classes=[a,b,c]", "model.loss=bce needs a binary task"),
    # data: the data module's own checks, run on the config alone
    ("data.augment.crop_padding=-2", "data.augment.crop_padding=-2"),
    ("+data.augment.vflip=true", "data.augment.vflip"),
    ("data.batch_size=0", "data.batch_size=0"),
    ("data.val_fraction=1.5", "data.val_fraction=1.5"),
    ("data.num_workers=-1", "data.num_workers=-1"),
    ("data.class_weighting=maybe", "data.class_weighting='maybe'"),
    ("data.image_size=[0,3]", "data.image_size=[0, 3]"),
    ("data.channels=2", "data.channels=2"),
    ("data.mapping.balance=true +data.mapping.per_class={train:-3}", "data.mapping.per_class.train=-3"),
    ("+data.mapping.foo=1", "data.mapping.foo"),
    ("data.source=foo", "data.source='foo'"),
    ("+data.source_args.foo=1", "data.source_args.foo"),
    # run-level keys
    ("seed=abc", "seed='abc'"),
    ("seed=-1", "seed=-1"),
    ("trainer.max_epochs=0", "trainer.max_epochs=0"),
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5"),
    ("trainer.precision=foo", "trainer.precision='foo'"),
    ("trainer.devices=0", "trainer.devices=0"),
    ("trainer.devices=[-1]", "trainer.devices=[-1]"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1"),
    ("test=maybe", "test='maybe'"),
    ("report.misclassified=-1", "report.misclassified=-1"),
    ("report.operating_point='precision>=2'", "report.operating_point='precision>=2'"),
])
def test_train_mistakes_exit_2_naming_key_and_value_before_any_data_is_read(
        make_cfg, no_data_reads, caplog: pytest.LogCaptureFixture, override: str, named: str) -> None:
    cfg = make_cfg("data=digits", *override.split(" "), *FAST)
    assert named in refused_line(caplog, run, cfg, check_options)


@pytest.mark.parametrize(("override", "named"), [
    ("ckpt_path=/nonexistent.ckpt", "ckpt_path=/nonexistent.ckpt does not exist"),
    ("ckpt_path=last", "ckpt_path=last but"),
    ("resume=/nonexistent/run", "resume=/nonexistent/run: no such run directory"),
])
def test_a_checkpoint_or_run_dir_that_is_not_there_exits_1_before_any_data_is_read(
        make_cfg, no_data_reads, caplog: pytest.LogCaptureFixture, override: str, named: str) -> None:
    cfg = make_cfg("data=digits", override, *FAST)  # a missing file is exit 1, as everywhere (docs/usage.md)
    assert named in refused_line(caplog, run, cfg, check_options, code=1)


@pytest.mark.parametrize(("command", "override", "named"), [
    ("baseline", "baseline.classifier=svm", "baseline.classifier='svm'"),
    ("baseline", "baseline.pca_components=0", "baseline.pca_components=0"),
    ("baseline", "+baseline.params.n_estimatorz=3", "baseline.params="),
    ("baseline", "baseline.max_train=-1", "baseline.max_train=-1"),
    ("baseline", "data.batch_size=0", "data.batch_size=0"),
    ("inspect", "inspect.samples_per_class=0", "inspect.samples_per_class=0"),
    ("inspect", "data.augment.hflip=maybe", "data.augment.hflip='maybe'"),
    ("xgb", "xgb.subsample=2", "xgb.subsample=2"),
    ("xgb", "embed_batch_size=0", "embed_batch_size=0"),
    ("evaluate", "tta={translate:-1}", "^tta.translate=-1"),  # evaluate's own key, not model.tta
    ("evaluate", "data.val_fraction=0", "data.val_fraction=0"),
])
def test_other_commands_refuse_mistakes_before_any_data_is_read(
        make_cfg, no_data_reads, caplog: pytest.LogCaptureFixture, command: str, override: str, named: str) -> None:
    import importlib

    module = importlib.import_module(f"lit_vision.commands.{command}")
    extra = ["ckpt_path=/nonexistent.ckpt"] if command in ("xgb", "evaluate") else []
    cfg = make_cfg(override, *extra, config_name=command)
    line = refused_line(caplog, module.run, cfg, getattr(module, "check_options", None))
    assert line.startswith(named[1:]) if named.startswith("^") else named in line


@pytest.mark.slow
@pytest.mark.parametrize(("override", "named"), [
    ("model.net.init=foo", "model.net.init='foo'"),
    ("data.augment.crop_padding=-2", "data.augment.crop_padding=-2"),
    ("seed=abc", "seed='abc'"),
])
def test_cli_mistake_is_one_line_and_exit_2_with_the_data_root_nowhere(override: str, named: str,
                                                                       tmp_path: Path) -> None:
    """data.root points nowhere: were the data read first, the error would be the missing MNIST files."""
    proc = cli("data=mnist", "data.root=/nonexistent-data-root", override, f"hydra.run.dir={tmp_path}", *QUIET)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line or "error" in line]
    assert len(errors) == 1 and named in errors[0], errors
    assert "nonexistent-data-root" not in proc.stdout + proc.stderr and "Traceback" not in proc.stderr
