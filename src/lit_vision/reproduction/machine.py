"""The machine a run ran on, recorded at run time (``metrics.json`` does not say): CPU model, cores, GPUs.

Read from ``/proc/cpuinfo`` and ``nvidia-smi`` rather than torch, so the reproduce process stays light.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """``lscpu``'s "Model name" (the first ``model name`` line of ``/proc/cpuinfo``), else the platform's word."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gpus() -> list[str]:
    """Names of the visible NVIDIA GPUs (none when ``CUDA_VISIBLE_DEVICES`` is empty or there is no nvidia-smi)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "" or shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def describe() -> dict[str, Any]:
    return {"cpu": cpu_model(), "cores": cores(), "gpus": gpus()}


def label(machine: dict[str, Any]) -> str:
    """``AMD EPYC ×2``; with GPUs ``AMD EPYC ×16 + NVIDIA H200``."""
    text = f"{machine.get('cpu', 'unknown CPU')} ×{machine.get('cores', '?')}"
    return text + "".join(f" + {g}" for g in machine.get("gpus") or [])
