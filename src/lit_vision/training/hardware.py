"""What this machine is good at: the precision ``trainer.precision=auto`` picks, cuDNN autotuning, thread counts.

bf16-mixed is only fast where the hardware multiplies bf16 natively: CUDA GPUs with bf16 support (Ampere and
newer), CPUs with AMX tiles (recent Xeons) and, for convolutional nets, CPUs with AVX-512 BF16 dot products (Zen 4
EPYCs: 1.3-1.8x fp32 on the notebook CNNs, but 0.75-0.78x on the dense fashion_dense net; benchmarks/cpu_precision.py,
docs/results.md). On an AVX2-only CPU autocast to bf16 is ~10x *slower* than fp32, so ``auto`` picks fp32 there.
The choice and its reason are printed at start.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger("lit_vision")

#: CPU load (1-minute average, in cores) above which a run is told that it shares the cores
SHARED_LOAD = 0.5


def cpu_has_amx() -> bool:
    """AMX tiles (bf16/int8 matrix units of Sapphire Rapids and later Xeons)."""
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool(probe()) if probe is not None else False


def cpu_has_avx512_bf16() -> bool:
    """AVX-512 BF16 (``vdpbf16ps``): bf16 dot products in vector registers (AMD Zen 4, Intel Cooper Lake and later)."""
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return bool(probe()) if probe is not None else False


def cuda_has_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolve_precision(requested: Any, on_cuda: bool, convolutional: bool = True) -> tuple[str, str]:
    """``(precision, reason)`` for ``trainer.precision``; anything but ``auto`` is kept as given.

    ``convolutional``: does the net convolve (AVX-512 BF16 speeds up convolutions, not small dense layers)?"""
    if str(requested) != "auto":
        return str(requested), "as configured"
    if on_cuda:
        if cuda_has_bf16():
            return "bf16-mixed", f"auto: {torch.cuda.get_device_name()} computes bf16 natively"
        return "16-mixed", f"auto: {torch.cuda.get_device_name()} has no bf16, fp16 autocast instead"
    if cpu_has_amx():
        return "bf16-mixed", "auto: this CPU has AMX tiles (native bf16 matrix multiply)"
    if cpu_has_avx512_bf16() and convolutional:
        return "bf16-mixed", "auto: this CPU has AVX-512 BF16 (native bf16 dot products) and the net convolves"
    if cpu_has_avx512_bf16():
        return "32-true", "auto: AVX-512 BF16 without AMX trains dense nets slower in bf16 than in fp32"
    return "32-true", (f"auto: this CPU has neither AMX nor AVX-512 BF16 ({torch.backends.cpu.get_cpu_capability()}), "
                       "bf16 would be slower")


def convolutional(cfg: DictConfig) -> bool:
    """Does the configured net convolve? Every registered net but the dense ``mlp`` does; a command without a model
    config (evaluate: the net comes from the checkpoint) counts as convolutional."""
    return OmegaConf.select(cfg, "model.net.name", default=None) != "mlp"


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def local_processes(cfg: DictConfig) -> int:
    """Training processes this machine runs for this job (DDP devices on CPU; 1 otherwise)."""
    devices = cfg.trainer.get("devices", 1)
    strategy = str(cfg.trainer.get("strategy", "auto"))
    if isinstance(devices, int) and devices > 1 and ("ddp" in strategy or "DDP" in strategy):
        return devices
    return 1


def cpu_threads(cfg: DictConfig, on_cuda: bool) -> int:
    """Intra-op threads per process: ``cpu_threads`` if set, else the cores this job's processes share evenly."""
    requested = cfg.cpu_threads
    if requested != "auto":
        return int(requested)
    cores = available_cores()
    return max(1, cores // local_processes(cfg)) if not on_cuda else min(torch.get_num_threads(), cores)


def warn_if_cores_are_busy() -> None:
    """One warning when other processes already keep the cores busy: measurements and speed will suffer."""
    if not hasattr(os, "getloadavg"):
        return
    load = os.getloadavg()[0]
    cores = available_cores()
    if load > SHARED_LOAD * cores:
        log.warning("the CPU is already busy (load %.1f on %d cores): this run shares the cores and will be slower. "
                    "Run one training at a time, or give each run its share with cpu_threads=<n>.", load, cores)


def configure(cfg: DictConfig, on_cuda: bool, announce: bool = True) -> dict[str, Any]:
    """Set threads and fp32 matmul precision (and warn on a busy CPU); return the Trainer arguments for
    ``precision`` and ``benchmark``."""
    threads = cpu_threads(cfg, on_cuda)
    torch.set_num_threads(threads)
    torch.set_float32_matmul_precision(cfg.matmul_precision if on_cuda else "highest")
    precision, reason = resolve_precision(cfg.trainer.precision, on_cuda, convolutional(cfg))
    args: dict[str, Any] = {"precision": precision}
    if on_cuda and cfg.trainer.benchmark is None:
        args["benchmark"] = True  # cuDNN picks the fastest conv algorithms for the (fixed) input shapes
    if announce:
        log.info("precision %s (%s); %d CPU thread%s per process", precision, reason, threads,
                 "" if threads == 1 else "s")
        warn_if_cores_are_busy()
    return args


@contextmanager
def gpus_hidden(active: bool) -> Iterator[None]:
    """While a run that uses no GPU trains: ``CUDA_VISIBLE_DEVICES=""``, restored afterwards.

    Why: Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` when imported (a CUDA check must not initialise CUDA
    before workers fork), and with it every ``torch.cuda.is_available()`` loads NVML through ctypes; Adam and AdamW
    ask on every ``step()``. On a machine without NVML that is 0.15 ms a step, a fifth of a notebook dense net's
    step on a 2-core CPU. With no visible GPU the check returns at once. Nothing changes once CUDA is initialised
    (its device count is cached), so ``active`` should be false then, and for runs on a GPU.
    """
    if not active:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
