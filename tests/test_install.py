"""The built wheel works on its own: config tree shipped, console scripts installed, outputs in the cwd.

Builds the wheel from a copy of the repository (so the checkout gets no ``build/`` folder and stale build files
cannot leak into the wheel), installs it with ``pip --target`` and runs it from an unrelated directory with
``PYTHONPATH`` pointing at that install, so the wheel's copy of ``lit_vision`` is imported, not the editable one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: top-level folders of a checkout that are not part of the build (and may be large)
_NOT_SOURCE = {".git", ".venv", "venv", "data", "outputs", "build", "dist", "multirun", "lightning_logs"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == REPO_ROOT
    return {n for n in names
            if (top and n in _NOT_SOURCE) or n in {"__pycache__", ".pytest_cache"} or n.endswith(".egg-info")}


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, (f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr\n{proc.stderr[-4000:]}")
    return proc


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_ships_config_and_trains_from_another_directory(tmp_path: Path) -> None:
    src = tmp_path / "src_copy"
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=_ignore)  # keeps src/lit_vision/conf -> ../../conf

    # build offline: no isolated build env (it would download setuptools)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
          "-w", str(wheels), str(src)], timeout=180)
    (wheel,) = wheels.glob("lit_vision-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("lit_vision/conf/train.yaml", "lit_vision/conf/data/cifar10.yaml",
                 "lit_vision/conf/hydra/default.yaml", "lit_vision/conf/paths/default.yaml", "lit_vision/py.typed"):
        assert name in names, name
    shipped = {n.removeprefix("lit_vision/conf/") for n in names if n.startswith("lit_vision/conf/")}
    assert shipped == {p.relative_to(REPO_ROOT / "conf").as_posix() for p in (REPO_ROOT / "conf").rglob("*.yaml")}
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n]

    site = tmp_path / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-q", "--target", str(site),
          str(wheel)], timeout=120)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("LIT_VISION_ROOT", "LIT_VISION_DATA_DIR", "HYDRA_FULL_ERROR")}
    env.update(PYTHONPATH=str(site), CUDA_VISIBLE_DEVICES="")

    where = _run([sys.executable, "-c", "import lit_vision; print(lit_vision.__file__)"],
                 timeout=60, cwd=elsewhere, env=env).stdout.strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), where

    _run([sys.executable, "-m", "lit_vision.train", "trainer.max_epochs=1", "accelerator=cpu", "report.plots=false"],
         timeout=240, cwd=elsewhere, env=env)
    (metrics_file,) = (elsewhere / "outputs" / "train" / "runs").glob("*/metrics.json")
    assert "test/acc" in json.loads(metrics_file.read_text())

    script = site / "bin" / "lit-vision-train"
    assert script.is_file(), sorted(p.name for p in (site / "bin").iterdir())
    help_text = _run([str(script), "--help"], timeout=120, cwd=elsewhere, env=env).stdout
    assert "data:" in help_text and "model:" in help_text, help_text[-2000:]
    for name in ("evaluate", "xgb", "baseline", "inspect", "predict", "compare", "sweeps", "export-backbone"):
        assert (site / "bin" / f"lit-vision-{name}").is_file(), name
