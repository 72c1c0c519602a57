"""The machine's pace: precision=auto, thread counts, channels_last, data resident on the device."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAST

from lit_vision.commands.train import run
from lit_vision.data.arrays import ImageArrays
from lit_vision.data.device_batches import DeviceBatches
from lit_vision.errors import ConfigError
from lit_vision.training import hardware
from lit_vision.training.builders import build_classifier, build_datamodule, use_channels_last

QUIET = ["accelerator=cpu", "~callbacks.progress_bar", "~callbacks.model_summary", "report.plots=false"]


# --- precision=auto ------------------------------------------------------------------------------------
def test_auto_precision_is_fp32_on_a_cpu_without_bf16_units(monkeypatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_avx512_bf16", lambda: False)
    precision, reason = hardware.resolve_precision("auto", on_cuda=False)
    assert precision == "32-true" and "neither AMX nor AVX-512 BF16" in reason


@pytest.mark.parametrize("amx,avx512_bf16", [(True, False), (False, True), (True, True)])
def test_auto_precision_is_bf16_on_a_cpu_with_bf16_units(monkeypatch, amx: bool, avx512_bf16: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: amx)
    monkeypatch.setattr(hardware, "cpu_has_avx512_bf16", lambda: avx512_bf16)
    assert hardware.resolve_precision("auto", on_cuda=False)[0] == "bf16-mixed"


def test_dense_nets_stay_fp32_on_avx512_bf16_without_amx(make_cfg, monkeypatch) -> None:
    """Measured here: bf16 autocast trains the notebooks' dense nets at 0.75x fp32 on AVX-512 BF16 (no AMX)."""
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_avx512_bf16", lambda: True)
    dense, cnn = make_cfg("model=dense"), make_cfg("model=cnn")
    assert hardware.convolutional(cnn) and not hardware.convolutional(dense)
    assert hardware.resolve_precision("auto", False, hardware.convolutional(dense))[0] == "32-true"
    assert hardware.resolve_precision("auto", False, hardware.convolutional(cnn))[0] == "bf16-mixed"
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: True)  # AMX tiles speed up dense layers too
    assert hardware.resolve_precision("auto", False, False)[0] == "bf16-mixed"


@pytest.mark.parametrize("bf16,expected", [(True, "bf16-mixed"), (False, "16-mixed")])
def test_auto_precision_on_cuda_follows_bf16_support(monkeypatch, bf16: bool, expected: str) -> None:
    monkeypatch.setattr(hardware, "cuda_has_bf16", lambda: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    assert hardware.resolve_precision("auto", on_cuda=True)[0] == expected


def test_an_explicit_precision_is_kept() -> None:
    assert hardware.resolve_precision("bf16-mixed", on_cuda=False) == ("bf16-mixed", "as configured")


def test_a_run_says_which_precision_it_picked_and_why(make_cfg, caplog, monkeypatch) -> None:
    monkeypatch.setattr(hardware, "cpu_has_amx", lambda: False)
    monkeypatch.setattr(hardware, "cpu_has_avx512_bf16", lambda: False)
    with caplog.at_level(logging.INFO, logger="lit_vision"):
        record = run(make_cfg(*FAST))
    assert "precision 32-true (auto: this CPU has neither AMX nor AVX-512 BF16" in caplog.text
    assert "test/acc" in record


# --- threads --------------------------------------------------------------------------------------------
def test_ddp_processes_share_the_cores(make_cfg, monkeypatch) -> None:
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert hardware.cpu_threads(make_cfg("trainer=ddp", "trainer.devices=2", "accelerator=cpu"), on_cuda=False) == 2
    assert hardware.cpu_threads(make_cfg("accelerator=cpu"), on_cuda=False) == 4
    assert hardware.cpu_threads(make_cfg("cpu_threads=3"), on_cuda=False) == 3


def test_configure_sets_the_thread_count(make_cfg) -> None:
    before = torch.get_num_threads()
    try:
        hardware.configure(make_cfg("cpu_threads=1", "accelerator=cpu"), on_cuda=False, announce=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_a_busy_cpu_is_reported(monkeypatch, caplog) -> None:
    monkeypatch.setattr(hardware.os, "getloadavg", lambda: (7.5, 7.0, 6.0))
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1})
    with caplog.at_level(logging.WARNING, logger="lit_vision"):
        hardware.warn_if_cores_are_busy()
    assert "the CPU is already busy (load 7.5 on 2 cores)" in caplog.text and "cpu_threads=" in caplog.text


def test_fp32_matmuls_stay_exact_on_a_cpu_and_follow_the_config_on_cuda(make_cfg, monkeypatch) -> None:
    """TF32 is a CUDA feature: on a CPU fp32 matmuls stay exact ('high' gave no speed-up there)."""
    monkeypatch.setattr(hardware, "cuda_has_bf16", lambda: True)  # no GPU here: pretend for the CUDA branch
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Test GPU")
    torch.set_float32_matmul_precision("high")
    hardware.configure(make_cfg("accelerator=cpu"), on_cuda=False, announce=False)
    assert torch.get_float32_matmul_precision() == "highest"
    hardware.configure(make_cfg("matmul_precision=high"), on_cuda=True, announce=False)
    assert torch.get_float32_matmul_precision() == "high"
    torch.set_float32_matmul_precision("highest")


def test_cpu_threads_must_be_auto_or_a_positive_int(make_cfg) -> None:
    from lit_vision.config import validate_config

    with pytest.raises(ConfigError, match="cpu_threads=0"):
        validate_config(make_cfg("cpu_threads=0"))


# --- channels_last ------------------------------------------------------------------------------------
def test_channels_last_auto_means_nets_with_convolutions() -> None:
    assert use_channels_last("auto", {"name": "convnet"}) is True
    assert use_channels_last("auto", {"name": "mlp"}) is False
    assert use_channels_last(False, {"name": "convnet"}) is False
    with pytest.raises(ConfigError, match="model.channels_last='sometimes'"):
        use_channels_last("sometimes", {"name": "convnet"})


def test_channels_last_net_computes_what_the_nchw_net_computes(make_cfg) -> None:
    dm = build_datamodule(make_cfg("model=cnn"))
    nhwc = build_classifier(make_cfg("model=cnn", "model.channels_last=true").model, dm)
    nchw = build_classifier(make_cfg("model=cnn", "model.channels_last=false").model, dm)
    nchw.load_state_dict(nhwc.state_dict())
    conv = nhwc.net.features[4].weight  # the second conv: 32 input channels (the first has 1, both layouts at once)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x = torch.from_numpy(np.ascontiguousarray(dm.test_set.images[:16]))
    with torch.no_grad():
        torch.testing.assert_close(nhwc.eval()(x), nchw.eval()(x), atol=1e-5, rtol=1e-4)


# --- data on the device ---------------------------------------------------------------------------------
def arrays(n: int) -> ImageArrays:
    return ImageArrays(np.arange(n, dtype=np.uint8).reshape(n, 1, 1, 1), np.arange(n) % 3, ["a", "b", "c"])


def test_device_batches_cover_every_image_once_per_epoch_in_a_new_order() -> None:
    batches = DeviceBatches(arrays(10), batch_size=4, shuffle=True, device=torch.device("cpu"), seed=0)
    epochs = [[int(v) for x, _ in batches for v in x.flatten()] for _ in range(2)]
    assert len(batches) == 3 and [len(b[0]) for b in batches] == [4, 4, 2]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(10)) and epochs[0] != epochs[1]
    again = DeviceBatches(arrays(10), batch_size=4, shuffle=True, device=torch.device("cpu"), seed=0)
    assert [int(v) for x, _ in again for v in x.flatten()] == epochs[0]  # seeded: runs repeat


def test_device_batches_keep_the_order_without_shuffle() -> None:
    batches = DeviceBatches(arrays(5), batch_size=2, shuffle=False, device=torch.device("cpu"), seed=0)
    assert [int(v) for x, _ in batches for v in x.flatten()] == [0, 1, 2, 3, 4]
    assert [int(v) for _, y in batches for v in y] == [0, 1, 2, 0, 1]


def test_a_run_with_the_data_on_the_device_reports_every_test_image(make_cfg) -> None:
    cfg = make_cfg("data.on_device=true", "trainer.max_epochs=1", *QUIET)
    record = run(cfg)
    rows = (Path(cfg.paths.output_dir) / "predictions.csv").read_text().splitlines()[1:]
    assert len(rows) == sum(record["support"].values()) == 360  # digits test split, in order, once each
    sources = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["data"]["counts"]["test"]
    assert sum(sources.values()) == 360


def test_on_device_auto_serves_device_batches_in_a_single_process_and_a_dataloader_under_ddp(make_cfg,
                                                                                             monkeypatch) -> None:
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    dm = build_datamodule(make_cfg())
    single = SimpleNamespace(world_size=1, global_rank=0, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    monkeypatch.setattr(type(dm), "trainer", property(lambda self: single), raising=False)
    assert isinstance(dm.train_dataloader(), DeviceBatches)
    monkeypatch.setattr("lit_vision.data.device_batches.free_memory", lambda device: 1000)  # does not fit
    assert isinstance(dm.train_dataloader(), DataLoader)
    ddp = SimpleNamespace(world_size=2, global_rank=0, strategy=SimpleNamespace(root_device=torch.device("cpu")))
    monkeypatch.setattr(type(dm), "trainer", property(lambda self: ddp), raising=False)
    assert isinstance(dm.train_dataloader(), DataLoader)


# --- no GPU probing while a CPU run trains ---------------------------------------------------------------
@pytest.mark.parametrize("before", [None, "0"])
def test_gpus_are_hidden_only_inside_the_block_and_restored_after(monkeypatch, before: str | None) -> None:
    if before is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", before)
    with hardware.gpus_hidden(True):
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
        assert torch.cuda.device_count() == 0
    assert os.environ.get("CUDA_VISIBLE_DEVICES") == before
    with hardware.gpus_hidden(False):
        assert os.environ.get("CUDA_VISIBLE_DEVICES") == before


def test_a_cpu_run_takes_its_optimizer_steps_with_the_gpus_hidden(make_cfg, monkeypatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    seen: list[str | None] = []
    step = torch.optim.Adam.step

    def recording_step(self, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(os.environ.get("CUDA_VISIBLE_DEVICES"))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", recording_step)
    run(make_cfg(*FAST, "model.optimizer.name=adam"))
    assert seen and set(seen) == {""}
    assert "CUDA_VISIBLE_DEVICES" not in os.environ  # given back after the fit
