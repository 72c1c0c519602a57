"""Every script under benchmarks/ runs at a tiny size and prints / writes what its docstring promises, so none of them
rots unnoticed. Each test runs the script's command line in a fresh process (the way a user runs it) and checks its
real output: a row per preset with positive images/s, the table printed, no failed request.

The sizes are for CI, not for measuring: the numbers are meaningless beyond being positive. The Keras tests need
the separate TensorFlow environment (``bash benchmarks/setup_keras_venv.sh`` makes ``.venv-keras``) and are skipped,
with that command as the reason, where it is absent. The gpu_check.sh dry run packs its wheels and data first
(``benchmarks/gpu_pack.sh``: PyPI and ../shared/datasets) when ``.whl/`` or ``.gpu_data/`` is missing or holds the
cifar pack (``gpu_pack.sh --cifar``; the dry run makes its own tiny CIFAR-10).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
KERAS_PYTHON = REPO / ".venv-keras" / "bin" / "python"
#: pip's words for "the package index cannot be reached" (gpu_pack.sh downloads three wheels)
OFFLINE = ("NewConnectionError", "Temporary failure in name resolution", "Network is unreachable",
           "Max retries exceeded", "ConnectTimeoutError")

pytestmark = pytest.mark.slow


def env() -> dict[str, str]:
    """The test's environment, without the variables that would point a run at the user's folders, and with this
    interpreter's bin dir first on PATH (so ``python3`` in a script is the project's venv)."""
    e = {k: v for k, v in os.environ.items() if k not in ("LIT_VISION_ROOT", "LIT_VISION_DATA_DIR")}
    e["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), e.get("PATH", "")])
    e["CUDA_VISIBLE_DEVICES"] = ""  # the tiny CPU sizes; a GPU run is gpu_check.sh's job
    return e


def run(cmd: list[str], timeout: float, cwd: Path = REPO, **kwargs) -> str:
    """Run ``cmd``, fail with its output unless it exits 0; its stdout + stderr."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=kwargs.pop("env", env()), check=False, **kwargs)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}\n{output[-6000:]}"
    return output


def table_rows(output: str, first: str) -> list[list[str]]:
    """The cells of the printed (rich) table rows that start with ``first``."""
    rows = []
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]
        if cells and cells[0] == first:
            rows.append(cells)
    return rows


def number(cell: str) -> float:
    return float(cell.replace(",", "").split()[0])


# --- the PyTorch benchmarks ----------------------------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_throughput_writes_a_row_per_preset(tmp_path: Path) -> None:
    """throughput.py on synthetic data: a dense preset grouped by steps_per_execution=32 (fp32, Fashion-MNIST IDX)
    and an ungrouped convolutional one (bf16 where the CPU has it, CIFAR-10 folders); no Keras column without its
    interpreter."""
    presets = ["fashion_dense", "cifar10_model_s"]
    out, md = tmp_path / "throughput.json", tmp_path / "throughput.md"
    output = run([sys.executable, BENCH / "throughput.py", "--presets", *presets, "--synthetic", "3000",
                  "--steps", "2", "--warmup", "1", "--repeats", "1", "--variants", "nchw",
                  "--keras-python", tmp_path / "no-keras", "--json", out, "--markdown", md], timeout=540)
    rows = json.loads(out.read_text())
    assert [r["preset"] for r in rows] == presets
    for r in rows:
        assert r["lit_vision"] > 0 and r["lit_vision_bare"] > 0 and r["plain"] > 0, r
        assert r["plain_variant"] == "nchw" and r["keras"] is None and r["ratio_keras"] is None
        assert r["ratio_plain"] == pytest.approx(r["lit_vision"] / r["plain"])
        assert r["gflops_lit_vision"] > 0 and r["machine"]["gemm_peak_gflops"] > 0
        assert r["repeats"]["lit_vision"] and len(r["repeats"]["lit_vision"]) == 1
    assert {r["preset"]: r["precision"] for r in rows}["fashion_dense"] == "32-true"
    for preset in presets:
        (cells,) = table_rows(output, preset)
        assert number(cells[3]) > 0, cells
        assert f"| {preset} |" in md.read_text()
    assert "training images/s" in output and "synthetic (3000 training images per dataset)" in output


@pytest.mark.timeout(600)
def test_step_overhead_times_both_sides_per_preset_and_batch(tmp_path: Path) -> None:
    """step_overhead.py on synthetic data: a dense preset grouped by steps_per_execution=32 (Fashion-MNIST) and an
    ungrouped CNN (CIFAR-10's Model S, whose plateau schedule keeps one step per Lightning step), each at a small
    batch and at its own, two interleaved rounds: wall and CPU µs per optimizer step of the
    lit_vision path and of the hand-written loop, the side that goes first alternating. 2600 images: 80% of them
    hold fashion_dense's two groups (warm-up, timed) of 32 x 32 images at its own batch."""
    import statistics

    presets = ["fashion_dense", "cifar10_model_s"]
    out, md = tmp_path / "step_overhead.json", tmp_path / "step_overhead.md"
    args = ["--presets", *presets, "--synthetic", "2600", "--steps", "4", "--warmup", "2", "--rounds", "2",
            "--small-batch", "8"]
    output = run([sys.executable, BENCH / "step_overhead.py", *args, "--json", out, "--markdown", md], timeout=540)
    rows = json.loads(out.read_text())
    assert [(r["preset"], r["kind"]) for r in rows] == [(p, k) for p in presets for k in ("small", "own")]
    for r in rows:
        grouped = r["preset"] == "fashion_dense"
        assert r["skipped"] is None and r["batch"] == (8 if r["kind"] == "small" else 32 if grouped else 64), r
        assert r["steps_per_execution"] == (32 if grouped else 1)
        # optimizer steps, in whole groups of steps_per_execution
        assert (r["warmup_steps"], r["timed_steps"]) == ((32, 32) if grouped else (2, 4)), r
        values = r["rounds"]
        for clock in ("wall", "cpu"):
            lit, loop = values[f"lit_{clock}_us"], values[f"loop_{clock}_us"]
            assert len(lit) == len(loop) == 2 and min(lit + loop) > 0, (clock, r)
            assert values[f"added_{clock}_us"] == pytest.approx([a - b for a, b in zip(lit, loop)])
            assert r["median"][f"ratio_{clock}"] == pytest.approx(statistics.median(a / b for a, b in zip(lit, loop)))
            assert r["spread"][f"lit_{clock}_us"] == [min(lit), max(lit)]
        assert sorted(r["order"]) == ["lit", "loop"], r["order"]
        assert r["machine"]["cpu"] and r["machine"]["rounds"] == 2 and r["machine"]["device"] == "cpu"
    assert [r["order"][0] for r in rows] == ["lit", "loop", "lit", "loop"]
    for preset in presets:
        assert len(table_rows(output, preset)) == 2
    text = md.read_text()
    assert "| preset | batch | k | lit µs/step | loop µs/step | added µs/step |" in text
    assert f"`python benchmarks/step_overhead.py {' '.join(args)}`" in text
    assert "µs per optimizer step" in output and "synthetic (2600 training images per dataset)" in output

def test_cpu_precision_reports_every_layout_and_mode(tmp_path: Path) -> None:
    """cpu_precision.py: the hand-written loop in both layouts under the three CPU numerics."""
    out = tmp_path / "precision.json"
    output = run([sys.executable, BENCH / "cpu_precision.py", "--presets", "mnist_cnn", "--synthetic", "2000",
                  "--steps", "2", "--repeats", "1", "--json", out], timeout=300)
    rows = json.loads(out.read_text())
    modes = ("fp32 exact", "fp32 high", "bf16 autocast")
    assert {(r["layout"], r["mode"]) for r in rows} == {(lay, m) for lay in ("nchw", "channels_last") for m in modes}
    assert all(r["preset"] == "mnist_cnn" and r["images_per_s"] > 0 and len(r["repeats"]) == 1 for r in rows), rows
    assert all(h in output for h in modes)
    printed = table_rows(output, "mnist_cnn")
    assert [c[1] for c in printed] == ["nchw", "channels_last"]
    assert all(number(c) > 0 for cells in printed for c in cells[2:]), printed


@pytest.fixture(scope="module")
def exported_run(cli_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's small trained pets run, exported by the command line: ``<run>/model.onnx``."""
    pytest.importorskip("onnxruntime")
    run_dir = tmp_path_factory.mktemp("bench") / "pets_cnn"
    shutil.copytree(cli_run, run_dir)
    run([sys.executable, "-m", "lit_vision.export", run_dir], timeout=300)
    assert (run_dir / "model.onnx").is_file()
    return run_dir


def test_onnx_speed_compares_the_runtimes_per_batch(exported_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx_speed.json"
    output = run([sys.executable, BENCH / "onnx_speed.py", exported_run, "--batches", "1", "4",
                  "--seconds", "0.3", "--json", out], timeout=300)
    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [1, 4]
    for r in rows:
        assert r["onnxruntime"] > 0 and r["pytorch"] > 0
        assert r["ratio"] == pytest.approx(r["onnxruntime"] / r["pytorch"])
    assert "inference images/s" in output and "onnxruntime" in output
    assert [number(c[1]) > 0 for c in (table_rows(output, "1") + table_rows(output, "4"))] == [True, True]


def test_serve_load_answers_every_request(exported_run: Path, pets_root: Path, tmp_path: Path) -> None:
    """serve_load.py: the real server in a child process, 2 clients for 3 s, every 3rd upload a non-image; no good
    request fails and every bad upload is refused with 400."""
    out = tmp_path / "load.json"
    output = run([sys.executable, BENCH / "serve_load.py", exported_run / "model.onnx", "--images",
                  pets_root / "test", "--clients", "2", "--seconds", "3", "--bad-every", "3", "--json", out],
                 timeout=300)
    summary = json.loads(out.read_text())
    assert summary["clients"] == 2 and summary["requests"] > summary["bad_sent"] > 0, summary
    assert summary["good_failed"] == 0 and summary["bad_not_refused"] == 0, summary
    assert summary["images_per_s"] > 0 and 0 < summary["p50_ms"] <= summary["p99_ms"], summary
    assert "lit_vision.serve under load" in output


def test_startup_times_both_layouts(cifar_folders: Path, tmp_path: Path) -> None:
    """startup.py on a tiny CIFAR image-folder export: seconds to the first step for folders and pickles."""
    out = tmp_path / "startup.json"
    output = run([sys.executable, BENCH / "startup.py", "--jpeg-root", cifar_folders, "--work", tmp_path / "work",
                  "--repeats", "1", "--json", out], timeout=400)
    results = json.loads(out.read_text())
    assert set(results) == {"folders (JPEG, cached)", "batches (torchvision pickles)"}
    assert all(len(v) == 1 and 0 < v[0] < 300 for v in results.values()), results
    assert (tmp_path / "work" / "cifar-10-batches-py" / "test_batch").is_file()
    assert "median s" in output and all(name in output for name in results)


# --- the data generators ------------------------------------------------------------------------------------------
def test_make_photos_writes_every_format_and_resumes(tmp_path: Path) -> None:
    """make_photos.py --smoke from a 2-class x 3-JPEG source: train/ and test/ class folders, every file a readable
    image of its suffix's format, at least one HEIC, PNG and EXIF-rotated JPEG (exif_transpose turns 6 and 8 upright:
    width and height swapped); a second run writes nothing."""
    from collections import Counter

    from PIL import Image, ImageOps

    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    source = tmp_path / "source"
    for c, name in enumerate(("cats", "dogs")):
        (source / "train" / name).mkdir(parents=True)
        for k in range(3):
            Image.new("RGB", (32, 32), (80 * k, 200 * c, 90)).save(source / "train" / name / f"{k}.jpg")
    out = tmp_path / "photos"
    cmd = [sys.executable, BENCH / "make_photos.py", out, "--smoke", "--source", source, "--workers", "2"]
    output = run(cmd, timeout=120)
    assert "24 photos (24 written, 0 already there)" in output, output
    assert all((out / split / name).is_dir() for split in ("train", "test") for name in ("cats", "dogs"))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 24 and not [p for p in files if p.name.startswith(".")], files
    formats, orientations = Counter(), Counter()
    for path in files:
        with Image.open(path) as img:
            assert img.format == {".jpg": "JPEG", ".png": "PNG", ".heic": "HEIF"}[path.suffix], path
            formats[img.format] += 1
            orientation = img.getexif().get(0x0112, 1)
            orientations[orientation] += 1
            upright = ImageOps.exif_transpose(img)
            assert upright.size == (img.size[::-1] if orientation in (6, 8) else img.size), (path, orientation)
            assert img.size[0] != img.size[1]
    assert formats["HEIF"] >= 1 and formats["PNG"] >= 1 and formats["JPEG"] >= 3, formats
    assert all(orientations[o] >= 1 for o in (3, 6, 8)), orientations
    written = {p: p.stat().st_mtime_ns for p in files}
    again = run(cmd, timeout=120)
    assert "24 photos (0 written, 24 already there)" in again, again
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == written


def test_loader_measures_every_path_and_judges_the_targets(tmp_path: Path) -> None:
    """loader.py --smoke on its own tiny photo folder, one worker: the single-thread limits, both loaders, prepare,
    each with positive images/s, and a verdict per target."""
    out = tmp_path / "loader.json"
    output = run([sys.executable, BENCH / "loader.py", "--smoke", "--workers", "1", "--json", out], timeout=300)
    report = json.loads(out.read_text())
    rows = {r["key"]: r for r in report["rows"]}
    assert {"single_thread_shards", "shards_loader", "imagefolder_loader", "prepare"} <= set(rows), rows
    assert all(r["images_per_s"] > 0 and r["images"] > 0 and r["workers"] >= 1 for r in rows.values()), rows
    assert rows["shards_loader"]["workers"] == rows["imagefolder_loader"]["workers"] == 1
    assert rows["shards_loader"]["first_batch_s"] > 0 and rows["imagefolder_loader"]["first_batch_s"] > 0
    assert rows["prepare"]["images"] == report["folder"]["images"] == 24
    assert len(report["targets"]) == 3 and all(isinstance(t["met"], bool) and t["threshold"] > 0
                                               for t in report["targets"]), report["targets"]
    assert report["machine"]["torch"] and report["machine"]["litdata"] and "loader.py" in report["command"]
    for r in report["rows"]:
        (cells,) = table_rows(output, r["name"])
        assert number(cells[4]) > 0, cells
    assert output.count("target: ") == 3 and ("— met" in output or "NOT met" in output)


def test_shard_memory_trains_on_two_sizes_of_shard_set(tmp_path: Path) -> None:
    """shard_memory.py --smoke: two hard-linked sets, 4x apart, each trained on; a peak per set and their ratio."""
    out = tmp_path / "memory.json"
    output = run([sys.executable, BENCH / "shard_memory.py", "--smoke", "--json", out], timeout=300)
    report = json.loads(out.read_text())
    small, large = report["rows"]
    assert large["train_images"] > 3 * small["train_images"] and large["shard_gb"] > 3 * small["shard_gb"]
    assert all(r["peak_pss_tree"] > 50 * 2**20 and r["peak_rss_main"] > 50 * 2**20 for r in report["rows"]), report
    assert "largest / smallest set, peak PSS" in output
    assert report["ratio"] == pytest.approx(large["peak_pss_tree"] / small["peak_pss_tree"])


# --- the Keras column: a separate TensorFlow environment -----------------------------------------------------------
def keras_python() -> Path:
    if not KERAS_PYTHON.is_file():
        pytest.skip(f"no {KERAS_PYTHON.relative_to(REPO)}: `bash benchmarks/setup_keras_venv.sh` makes it "
                    "(TensorFlow, a few hundred MB from PyPI)")
    return KERAS_PYTHON


def test_keras_models_have_the_notebooks_parameter_counts() -> None:
    """keras_models.py: every notebook model builds and has the parameter counts the notebooks printed
    (``keras_throughput.py --check`` builds them all)."""
    python = keras_python()
    output = run([python, BENCH / "keras_throughput.py", "--check"], timeout=300)
    assert "all 7 parameter counts match the notebooks'" in output, output
    for preset in ("horse_cnn", "cifar10_model_s", "fashion_dense", "fashion_cnn_final", "mnist_dense_mse",
                   "mnist_cnn", "fer_custom_cnn"):
        (line,) = [ln for ln in output.splitlines() if ln.startswith(preset + " ")]
        assert line.endswith(" ok"), line


def test_keras_throughput_writes_a_row_per_preset(tmp_path: Path) -> None:
    python = keras_python()
    out = tmp_path / "keras.json"
    presets = ["fashion_dense", "mnist_cnn"]
    run([python, BENCH / "keras_throughput.py", "--presets", *presets, "--steps", "2", "--warmup", "1",
         "--repeats", "1", "--threads", "2", "--json", out], timeout=300)
    result = json.loads(out.read_text())
    assert result["steps"] == 2 and result["warmup"] == 1 and result["tensorflow"]
    assert [r["preset"] for r in result["rows"]] == presets
    for r in result["rows"]:
        assert r["images_per_s"] > 0 and r["ms_per_step"] > 0 and len(r["repeats"]) == 1 and r["batch"] > 0, r


# --- the GPU check, in its CPU dry run -----------------------------------------------------------------------------
@pytest.mark.timeout(900)
def test_gpu_check_dry_run_passes_every_step(tmp_path: Path) -> None:
    """gpu_check.sh --dry-run: the wheels installed from .whl/, Fashion-MNIST and the photo source from .gpu_data/,
    then every step at a tiny size (step 2 on one preset; limits x3 for a loaded CPU), the cifar step included (a
    dry run's default STEPS: a tiny synthetic CIFAR-10 packed and unpacked as the cifar pack's, trained with LitData
    and pillow-heif unimportable): all ok, the summary and JSON records written."""
    packed = [(REPO / ".gpu_data" / "FashionMNIST").is_dir(), (REPO / ".gpu_data" / "photo_source").is_dir(),
              any((REPO / ".whl").glob("litdata-*.whl"))]
    if not all(packed):
        proc = subprocess.run(["bash", BENCH / "gpu_pack.sh"], cwd=REPO, capture_output=True, text=True,
                              timeout=600, env=dict(env(), PYTHON=sys.executable), check=False)
        if proc.returncode != 0 and any(word in proc.stderr for word in OFFLINE):
            pytest.skip(f"gpu_pack.sh: the package index is not reachable: {proc.stderr.strip().splitlines()[-1]}")
        assert proc.returncode == 0, f"gpu_pack.sh exited {proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    out = tmp_path / "gpu_check"
    output = run(["bash", BENCH / "gpu_check.sh", "--dry-run", out], timeout=840,
                 env=dict(env(), PYTHON=sys.executable, PRESETS="fer_custom_cnn", LIMIT_SCALE="3"))
    summary = (out / "summary.md").read_text()
    steps = [ln.strip() for ln in summary.split("## Steps", 1)[1].split("##", 1)[0].splitlines() if ln.strip()]
    assert len(steps) == 11 and all(s.startswith("ok ") for s in steps), f"{summary}\n{output[-3000:]}"
    assert any("step overhead" in s for s in steps) and any("cifar: unpack" in s for s in steps), steps
    assert any("train cifar10_fast (cpu)" in s for s in steps), steps
    assert "FAILED" not in summary and "FAILED" not in output
    assert "dry run on the CPU" in summary and re.search(r"test accuracy \d\.\d{4}", summary), summary
    metrics = json.loads((out / "fashion_best_metrics.json").read_text())
    assert metrics
    expected = {"throughput.json": ["fer_custom_cnn"], "throughput_fp32.json": ["mnist_cnn"],
                "throughput_compiled.json": ["mnist_cnn"]}
    for name, presets in expected.items():
        rows = json.loads((out / name).read_text())
        assert [r["preset"] for r in rows] == presets and all(r["lit_vision"] > 0 and r["plain"] > 0 for r in rows)
        assert f"## {name.removesuffix('.json')}\n" in summary
    overhead = json.loads((out / "step_overhead.json").read_text())
    measured = {r["preset"] for r in overhead if not r["skipped"]}  # at batch 8 (their own batches need more images)
    assert {r["preset"] for r in overhead} == measured == {"fashion_dense", "mnist_cnn"}, overhead
    assert "## step_overhead\n" in summary and (out / "step_overhead.md").is_file()
    cifar = json.loads((out / "cifar10_fast_metrics.json").read_text())
    counts = {split: sum(c.values()) for split, c in cifar["data"]["counts"].items()}
    assert cifar["epochs_trained"] == 1 and counts["test"] == 50 and counts["train"] + counts["val"] == 100, counts
    assert re.search(r"## cifar10_fast\n\ntest accuracy \d\.\d{4} \| epochs 1 \| train/val/test images \d+/\d+/50 "
                     r"\| training \d+\.\d s", summary), summary
    loader = json.loads((out / "loader_photos.json").read_text())
    assert {r["key"] for r in loader["rows"]} >= {"shards_loader", "imagefolder_loader", "prepare"}
    photo_runs = json.loads((out / "photo_runs.json").read_text())
    assert set(photo_runs) == {"shards", "memory"} and all(r["images_per_s"] > 0 for r in photo_runs.values())
    assert "## photos" in summary and "shards training / in-memory training" in summary
    assert (out / "gpu_check.log").stat().st_size > 0
