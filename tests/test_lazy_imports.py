"""LitData and pillow-heif are imported only where they are needed: streaming shards (``data=shards``,
``prepare``) and HEIC decoding. A CIFAR-10 run from JPEG/PNG folders needs neither, so a machine that lacks them
(the GPU check's cifar pack carries only Hydra/OmegaConf: benchmarks/gpu_pack.sh --cifar) still trains.

Each test runs in a fresh interpreter (what is imported is per process) where a ``sys.meta_path`` finder refuses
the two packages as if they were not installed, and reports which of them ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import FAST
from PIL import Image

from lit_vision.imaging import register_heif

REPO = Path(__file__).resolve().parents[1]
BLOCKED = ("litdata", "pillow_heif")

#: the preamble of every child: BLOCKED made unimportable (``block=True``), and at exit a line
#: ``IMPORTED: [...] ATTEMPTED: [...]``: the modules of BLOCKED that were imported, and the imports refused
PREAMBLE = """
import atexit, importlib.abc, json, sys
BLOCKED = {blocked!r}

ATTEMPTED = []

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            ATTEMPTED.append(name)
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)", name=name)
        return None

if {block!r}:
    sys.meta_path.insert(0, NotInstalled())
atexit.register(lambda: print("IMPORTED:", json.dumps(sorted(m for m in sys.modules
                                                              if m.partition(".")[0] in BLOCKED)),
                              "ATTEMPTED:", json.dumps(ATTEMPTED)))
"""


def run_child(code: str, *args: str, block: bool = True,
              timeout: float = 300) -> tuple[subprocess.CompletedProcess, list[str], list[str]]:
    """Run ``code`` after :data:`PREAMBLE` in a fresh interpreter: the finished process, the modules of
    :data:`BLOCKED` it imported, and the imports of them it was refused (tried, and maybe caught)."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", PREAMBLE.format(blocked=BLOCKED, block=block) + code, *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("IMPORTED: ")]
    assert lines, f"no IMPORTED line (exit {proc.returncode})\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    imported, _, attempted = lines[-1].removeprefix("IMPORTED: ").partition(" ATTEMPTED: ")
    return proc, json.loads(imported), json.loads(attempted)


def test_cifar10_fast_trains_without_litdata_and_pillow_heif(cifar_folders: Path, tmp_path: Path) -> None:
    """``python -m lit_vision.train experiment=cifar10_fast`` on CIFAR-10 image folders (the GPU check's cifar
    step, at fast_dev_run size) with LitData and pillow-heif unimportable: it trains and tests, and neither got
    imported."""
    run_dir = tmp_path / "run"
    code = ("import runpy\nsys.argv[0] = 'lit_vision.train'\n"
            "runpy.run_module('lit_vision.train', run_name='__main__', alter_sys=True)\n")
    proc, imported, attempted = run_child(code, "experiment=cifar10_fast", f"data.root={cifar_folders}", *FAST,
                               "report.plots=false", f"paths.cache_dir={tmp_path / 'cache'}",
                               f"hydra.run.dir={run_dir}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    assert imported == [] and attempted == [], output[-4000:]  # nothing even tried (and caught) the import
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/acc" in metrics, metrics


def test_importing_lit_vision_imports_neither() -> None:
    """The package and its training, data and serving modules import neither package (they are installed here)."""
    code = ("import lit_vision.commands.train, lit_vision.data, lit_vision.data.shards, lit_vision.imaging, "
            "lit_vision.deploy.inference\n")
    proc, imported, _ = run_child(code, block=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert imported == []


def test_heic_is_decoded_once_pillow_heif_is_registered_on_first_need(tmp_path: Path) -> None:
    """``decode_image`` registers pillow-heif the first time Pillow cannot identify a file: a JPEG decodes without
    it, a HEIC imports it and decodes; with pillow-heif not installed the JPEG still decodes and the HEIC is refused
    as unidentified."""
    assert register_heif()  # here, to write the HEIC
    rgb = Image.new("RGB", (24, 16), (200, 120, 40))
    rgb.save(tmp_path / "a.jpg", quality=95)
    rgb.save(tmp_path / "b.heic", format="HEIF", quality=95)
    code = """
from PIL import UnidentifiedImageError
from lit_vision.imaging import decode_image
folder = sys.argv[1]
assert decode_image(f"{folder}/a.jpg", 3, (8, 12)).shape == (3, 8, 12)
print("JPEG decoded; pillow_heif imported:", "pillow_heif" in sys.modules)
try:
    array = decode_image(f"{folder}/b.heic", 3, None)
    print("HEIC decoded:", array.shape, int(array[0].mean()))
except UnidentifiedImageError as exc:
    print("HEIC refused:", exc)
"""
    proc, imported, _ = run_child(code, str(tmp_path), block=False, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "JPEG decoded; pillow_heif imported: False" in proc.stdout
    assert "HEIC decoded: (3, 16, 24)" in proc.stdout and "pillow_heif" in imported, proc.stdout
    red = int(proc.stdout.split("HEIC decoded: (3, 16, 24)")[1].split()[0])
    assert abs(red - 200) < 10  # the picture, not noise

    proc, imported, attempted = run_child(code, str(tmp_path), block=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "JPEG decoded; pillow_heif imported: False" in proc.stdout
    assert "HEIC refused: cannot identify image file" in proc.stdout and imported == [], proc.stdout
    assert attempted == ["pillow_heif"]  # once, for the HEIC
