"""The built wheel works on its own: config tree shipped, console scripts installed, outputs in the cwd; and a
torch-free install (the wheel without its dependencies, plus the ``serve`` extra's packages) serves an ``.onnx``.

Builds the wheel from a copy of the repository (so the checkout gets no ``build/`` folder and stale build files
cannot leak into the wheel), installs it with ``pip --target`` and runs it from an unrelated directory with
``PYTHONPATH`` pointing at that install, so the wheel's copy of ``lit_vision`` is imported, not the editable one.
The serving install goes into a fresh venv, its packages from the package index (pip's cache helps).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from serve_client import free_port, predict, request, wait_until_up

REPO_ROOT = Path(__file__).resolve().parents[1]

#: top-level folders of a checkout that are not part of the build (and may be large)
_NOT_SOURCE = {".git", ".venv", "venv", "data", "outputs", "build", "dist", "multirun", "lightning_logs"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == REPO_ROOT
    return {n for n in names
            if (top and n in _NOT_SOURCE) or n in {"__pycache__", ".pytest_cache"} or n.endswith(".egg-info")}


def _run(cmd: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)
    assert proc.returncode == 0, (f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n"
                                  f"--- stderr\n{proc.stderr[-4000:]}")
    return proc


def build_wheel(tmp_path: Path) -> Path:
    """The project's wheel, built from a copy of the checkout in ``tmp_path``."""
    src = tmp_path / "src_copy"
    shutil.copytree(REPO_ROOT, src, symlinks=True, ignore=_ignore)  # keeps src/lit_vision/conf -> ../../conf

    # build offline: no isolated build env (it would download setuptools)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir", "-q",
          "-w", str(wheels), str(src)], timeout=180)
    (wheel,) = wheels.glob("lit_vision-*.whl")
    return wheel


def extra_requirements(wheel: Path, extra: str) -> list[str]:
    """The requirements of one extra, as the wheel's metadata lists them (``Requires-Dist: x>=1; extra == "e"``)."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(name).decode())
    marker = re.compile(rf"""^(?P<req>[^;]+);\s*extra\s*==\s*["']{extra}["']$""")
    return [m["req"].strip() for r in meta.get_all("Requires-Dist") or [] if (m := marker.match(r.strip()))]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_wheel_ships_config_and_trains_from_another_directory(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
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
    for name in ("evaluate", "xgb", "baseline", "inspect", "predict", "compare", "sweeps", "export-backbone",
                 "rerun", "reproduce", "tune"):
        assert (site / "bin" / f"lit-vision-{name}").is_file(), name
    listing = _run([str(site / "bin" / "lit-vision"), "--help"], timeout=60, cwd=elsewhere, env=env).stdout
    assert all(f"  {name} " in listing for name in ("train", "serve", "export_backbone", "rerun")), listing


#: what a torch-free server must not have installed
TRAINING_ONLY = ("torch", "torchvision", "lightning", "hydra", "omegaconf", "timm", "xgboost", "sklearn")
#: pip's words for "the package index cannot be reached" (the test then skips instead of failing)
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "Max retries exceeded", "ConnectTimeoutError")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_onnx_export_is_served_from_a_torch_free_install(tmp_path: Path, onnx_model: Path,
                                                           pets_root: Path) -> None:
    """README's torch-free serving install, in a fresh venv: the wheel with ``--no-deps``, then exactly the
    ``serve`` extra's packages; ``import torch`` fails there and ``python -m lit_vision.serve model.onnx`` answers
    a real ``POST /predict``."""
    wheel = build_wheel(tmp_path)
    packages = extra_requirements(wheel, "serve")
    assert {re.split(r"[<>=!~ \[]", p)[0] for p in packages} >= {"onnxruntime", "fastapi", "uvicorn"}, packages

    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "LIT_VISION_ROOT", "LIT_VISION_DATA_DIR")}
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120, env=env)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run([*pip, "--no-deps", str(wheel)], timeout=120, env=env)
    proc = subprocess.run([*pip, *packages], capture_output=True, text=True, timeout=480, env=env, check=False)
    if proc.returncode != 0 and any(word in proc.stderr for word in OFFLINE):
        pytest.skip(f"the package index is not reachable: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, f"pip install {packages} exited {proc.returncode}\n{proc.stderr[-4000:]}"

    found = _run([python, "-c", "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])",
                  *TRAINING_ONLY], timeout=60, env=env).stdout.strip()
    assert found == "[]", f"installed in the serving venv: {found}"
    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, env=env, check=False)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr, no_torch.stderr

    port = free_port()
    server = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([python, "-m", "lit_vision.serve", str(onnx_model), "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until_up(server, proc)
        status, meta = request(server + "/metadata")
        assert status == 200 and meta["backend"] == "onnxruntime" and meta["classes"] == ["cat", "dog"]
        photo = min((pets_root / "test" / "cat").glob("*.png"))
        status, body = predict(server, [("file", photo.name, photo.read_bytes())])
        assert status == 200, body
        (entry,) = body["results"]
        assert entry["file"] == photo.name and entry["predicted"] in ("cat", "dog")
        assert sum(entry["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert entry["decision"]["class"] == entry["predicted"]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0]
    assert "serving pets (onnxruntime" in output, output


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_package_installs_beside_current_optuna_without_a_downgrade(tmp_path: Path) -> None:
    """Resolving the wheel's dependencies together with ``optuna>=5`` in a fresh venv (pip's resolver, a dry run)
    succeeds and picks Optuna 5: nothing of lit_vision pins an older one."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], timeout=120)
    report = tmp_path / "report.json"
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--dry-run", "-q", "--report",
                           str(report), str(wheel), "optuna>=5"], capture_output=True, text=True, timeout=540)
    if proc.returncode != 0 and any(word in proc.stderr for word in OFFLINE):
        pytest.skip(f"the package index cannot be reached: {proc.stderr.strip()[-300:]}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    chosen = {item["metadata"]["name"].lower(): item["metadata"]["version"]
              for item in json.loads(report.read_text())["install"]}
    assert int(chosen["optuna"].split(".")[0]) >= 5, chosen
    assert {"lit-vision", "torch", "lightning", "hydra-core"} <= {name.replace("_", "-") for name in chosen}, chosen
    assert "hydra-optuna-sweeper" not in chosen
