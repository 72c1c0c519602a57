"""build_trainer: DDP on CPU (gloo, no SyncBatchNorm), runs without a logger, the model summary, the CSV logger's
warning, and the console filters."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import pytest
import torch
from conftest import FAST
from lightning.pytorch.callbacks import LearningRateMonitor, ModelSummary
from lightning.pytorch.strategies import DDPStrategy

from lit_vision.commands.train import run
from lit_vision.training.builders import build_classifier, build_datamodule, build_trainer, instantiate_group
from lit_vision.training.callbacks import NetSummary, RunDirCSVLogger, quiet_known_noise, summary_rows

SYNC_BN_OFF = "trainer.sync_batchnorm switched off"
LR_MONITOR_OUT = "LearningRateMonitor left out"


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if text in r.getMessage()]


# --- DDP on CPU ------------------------------------------------------------------------------------
def test_ddp_on_cpu_uses_gloo_without_sync_batchnorm(make_cfg, caplog) -> None:
    cfg = make_cfg("trainer=ddp", "accelerator=cpu", "trainer.devices=2", *FAST)
    assert cfg.trainer.sync_batchnorm is True  # the config asks for it; on CPU the builder switches it off
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        trainer = build_trainer(cfg, instantiate_group(cfg.get("logger")))
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy._get_process_group_backend() == "gloo"
    assert trainer.strategy._layer_sync is None  # no SyncBatchNorm conversion
    assert trainer.num_devices == 2
    [record] = messages(caplog, SYNC_BN_OFF)
    assert record.levelno == logging.INFO


def test_ddp_cpu_alias_builds_the_same_trainer_quietly(make_cfg, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        cfg = make_cfg("trainer=ddp_cpu", "accelerator=cpu", *FAST)
        trainer = build_trainer(cfg, instantiate_group(cfg.get("logger")))
    assert isinstance(trainer.strategy, DDPStrategy)
    assert trainer.strategy._get_process_group_backend() == "gloo"
    assert trainer.strategy._layer_sync is None
    assert messages(caplog, SYNC_BN_OFF) == []  # ddp_cpu asks for no SyncBatchNorm: nothing to switch off


def test_ddp_on_gpu_config_keeps_sync_batchnorm(make_cfg, caplog, monkeypatch) -> None:
    """The switch is for CPUs only: with a CUDA accelerator the config's sync_batchnorm=true is passed on."""
    from lit_vision.training import distributed

    monkeypatch.setattr(distributed.hardware, "configure", lambda cfg, on_cuda, announce=True: {})  # no GPU here
    cfg = make_cfg("trainer=ddp", "accelerator=cuda")
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        assert distributed.device_overrides(cfg) == {}
    assert messages(caplog, SYNC_BN_OFF) == []


def test_ddp_with_batchnorm_fits_in_a_cpu_process(make_cfg) -> None:
    """model=cnn has BatchNorm; torch's SyncBatchNorm raises on CPU input once a process group exists."""
    cfg = make_cfg("trainer=ddp", "accelerator=cpu", "trainer.devices=1", "model=cnn", *FAST)
    try:
        record = run(cfg)
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    assert record["world_size"] == 1
    assert 0.0 <= record["test/acc"] <= 1.0


# --- no logger -------------------------------------------------------------------------------------
@pytest.mark.parametrize("override", ["~logger", "logger=[]", "logger=none"])
def test_without_logger_the_lr_monitor_is_left_out(make_cfg, caplog, override: str) -> None:
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        cfg = make_cfg(override, *FAST)
        trainer = build_trainer(cfg, instantiate_group(cfg.get("logger")))
    assert trainer.loggers == []
    assert not any(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks)
    [record] = messages(caplog, LR_MONITOR_OUT)
    assert record.levelno == logging.INFO


def test_with_a_logger_the_lr_monitor_stays(make_cfg, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        cfg = make_cfg("accelerator=cpu")  # not fast_dev_run: it swaps loggers for a dummy
        trainer = build_trainer(cfg, instantiate_group(cfg.get("logger")))
    assert [type(lg) for lg in trainer.loggers] == [RunDirCSVLogger]
    assert sum(isinstance(cb, LearningRateMonitor) for cb in trainer.callbacks) == 1
    assert messages(caplog, LR_MONITOR_OUT) == []


@pytest.mark.parametrize("override", ["~logger", "logger=[]", "logger=none"])
def test_train_without_logger_completes(make_cfg, override: str) -> None:
    cfg = make_cfg(override, "accelerator=cpu", "trainer.max_epochs=1", "trainer.limit_train_batches=3",
                   "trainer.limit_val_batches=1", "~callbacks.progress_bar", "~callbacks.model_summary")
    record = run(cfg)
    out = Path(cfg.paths.output_dir)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/acc"] == pytest.approx(record["test/acc"])
    assert saved["epochs_trained"] == 1
    assert not (out / "metrics.csv").exists()  # no logger, no CSV log


# --- model summary ---------------------------------------------------------------------------------
def test_summary_rows_are_the_nets_layers_only(make_cfg) -> None:
    cfg = make_cfg("model=cnn", *FAST)
    model = build_classifier(cfg.model, build_datamodule(cfg))
    rows = summary_rows(model, max_depth=2)
    assert [name for name, *_ in rows] == ["net", "net.features", "net.head", "net.classifier"]
    assert [kind for _, kind, *_ in rows] == ["ConvNet", "Sequential", "Sequential", "Linear"]
    assert rows[0][2] == sum(p.numel() for p in model.net.parameters())
    deep = [name for name, *_ in summary_rows(model, max_depth=-1)]
    assert "net.features.0" in deep and not any("metrics" in n or "confusion" in n for n in deep)


def test_trainer_has_one_summary_and_lightning_adds_none(make_cfg) -> None:
    trainer = build_trainer(make_cfg("accelerator=cpu"), [])
    summaries = [cb for cb in trainer.callbacks if isinstance(cb, ModelSummary)]
    assert [type(cb) for cb in summaries] == [NetSummary]
    # ~callbacks.model_summary means no summary at all (Lightning would otherwise add its own, metrics and all)
    trainer = build_trainer(make_cfg("accelerator=cpu", "~callbacks.model_summary"), [])
    assert not any(isinstance(cb, ModelSummary) for cb in trainer.callbacks)


# --- CSV logger ------------------------------------------------------------------------------------
def test_csv_logger_does_not_warn_about_hydras_files(make_cfg) -> None:
    cfg = make_cfg(*FAST)
    out = Path(cfg.paths.output_dir)
    (out / ".hydra").mkdir(parents=True)
    (out / "train.log").write_text("log\n")
    [logger] = instantiate_group(cfg.logger)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert Path(logger.experiment.log_dir) == out
    assert [str(w.message) for w in caught] == []


def test_csv_logger_still_warns_before_replacing_a_metrics_csv(make_cfg) -> None:
    cfg = make_cfg(*FAST)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True)
    (out / "metrics.csv").write_text("epoch,step\n0,1\n")
    [logger] = instantiate_group(cfg.logger)
    with pytest.warns(UserWarning, match="exists and is not empty"):
        _ = logger.experiment
    assert not (out / "metrics.csv").exists()  # what the warning announces (Lightning's behaviour, unchanged)


# --- console filters -------------------------------------------------------------------------------
def _passes(message: str) -> bool:
    record = logging.LogRecord("lightning.pytorch.utilities.rank_zero", logging.INFO, __file__, 1, message, None, None)
    return bool(logging.getLogger("lightning.pytorch.utilities.rank_zero").filter(record))


def test_known_lightning_lines_are_dropped_and_nothing_else() -> None:
    quiet_known_noise()
    quiet_known_noise()  # idempotent
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    assert len(rank_zero.filters) == len({type(f) for f in rank_zero.filters})
    assert not _passes("💡 Tip: For seamless cloud logging and experiment tracking, try installing [litlogger](x)")
    assert not _passes("💡 Tip: For seamless cloud uploads and versioning, try installing [litmodels](x)")
    assert not _passes("GPU available: False, used: False")
    assert not _passes("TPU available: False, using: 0 TPU cores")
    assert _passes("GPU available: True (cuda), used: True")
    assert _passes("GPU available: True (cuda), used: False")
    assert _passes("`Trainer.fit` stopped: `max_epochs=1` reached.")
    assert _passes("Restoring states from the checkpoint path at x.ckpt")


def test_only_lightnings_leafspec_warning_is_filtered() -> None:
    leafspec = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_known_noise()
        warnings.warn_explicit(leafspec, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree")
        warnings.warn_explicit(leafspec, FutureWarning, "mine.py", 1, module="my_package.trees")
        warnings.warn_explicit("something else is deprecated", FutureWarning, "_pytree.py", 22,
                               module="lightning.pytorch.utilities._pytree")
    assert [(str(w.message), w.filename) for w in caught] == [(leafspec, "mine.py"),
                                                               ("something else is deprecated", "_pytree.py")]
