"""One inference path: for the same image files, ``predict -m <run>``, ``serve <run dir>``, ``serve <exported .onnx>``
and the run's own ``predictions.csv`` give the same probabilities (to 1e-4) and the same decisions — for a run with
test-time augmentation (the export bakes the views into the graph) and for a binary run with an operating point."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import PETS_COMMON, compose_config
from serve_client import predict, serving

from lit_vision.commands import predict as predict_command
from lit_vision.deploy import onnx_export, onnx_schema
from lit_vision.deploy.loader import load_model
from lit_vision.runs.paths import run_name
from lit_vision.training.checkpoints import load_classifier

pytest.importorskip("onnxruntime")
pytest.importorskip("uvicorn")
onnx = pytest.importorskip("onnx")

#: the largest probability difference any two consumers may show
TOLERANCE = 1e-4
TTA = {"hflip": True, "translate": 1}


def train_with_config(overrides: list[str], out: Path) -> Path:
    """Train a run with the CLI's runner and leave its resolved config in .hydra/ (the export reads test images)."""
    from omegaconf import OmegaConf

    from lit_vision.commands.runner import execute
    from lit_vision.commands.train import run

    cfg = compose_config(overrides, out)
    execute(run, cfg)
    (out / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml", resolve=True)
    return out


@pytest.fixture(scope="module")
def tta_run(tmp_path_factory: pytest.TempPathFactory, cifar_folders: Path) -> Path:
    """Ten classes, 32-px files resized to 24 px, ``model.tta={hflip: true, translate: 1}``."""
    out = tmp_path_factory.mktemp("runs") / "cifar_tta" / "runs" / "t0"
    return train_with_config(["model=cnn", "data=image_folder", f"data.root={cifar_folders}", "data.image_size=[24,24]",
                              "data.batch_size=16", "trainer.max_epochs=2", "model.tta={hflip: true, translate: 1}",
                              "report.plots=false", *PETS_COMMON], out)


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory: pytest.TempPathFactory, pets_root: Path) -> Path:
    """cat/dog with a threshold chosen for ``recall>=0.9`` on the validation split (operating_point.json)."""
    out = tmp_path_factory.mktemp("runs") / "pets_op" / "runs" / "t0"
    return train_with_config(["model=cnn", "data=image_folder", f"data.root={pets_root}", "data.batch_size=8",
                              "trainer.max_epochs=2", "report.operating_point='recall>=0.9'", "report.plots=false",
                              *PETS_COMMON], out)


Views = dict[str, tuple[np.ndarray, list[str]]]  # consumer → (probabilities per file, decided class per file)


def from_predictions_csv(run_dir: Path) -> tuple[list[Path], list[str], np.ndarray, list[str]]:
    """(files, class names, probabilities, predicted class) of the run's predictions.csv."""
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = [c.removeprefix("p_") for c in rows[0] if c.startswith("p_")]
    probs = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
    return [Path(r["source"]) for r in rows], classes, probs, [r["pred_name"] for r in rows]


def from_predict_command(run_dir: Path, files: list[Path], classes: list[str], tmp_path: Path) -> tuple:
    out = tmp_path / f"{run_dir.parent.parent.name}_predict.csv"
    predict_command.run(["-m", str(run_dir), *map(str, files), "--csv", str(out)])
    with open(out, newline="") as f:
        rows = {Path(r["image"]): r for r in csv.DictReader(f)}
    name = run_name(run_dir)
    ordered = [rows[p.resolve()] for p in files]
    return (np.array([[float(r[f"{name}:p_{c}"]) for c in classes] for r in ordered]),
            [r[f"{name}:pred"] for r in ordered])


def from_server(spec: Path, files: list[Path], classes: list[str]) -> tuple:
    model = load_model(spec)
    with serving(model) as url:
        status, body = predict(url, [("file", p.name, p.read_bytes()) for p in files])
    assert status == 200, body
    results = body["results"]
    assert [r["file"] for r in results] == [p.name for p in files]
    return np.array([[r["probabilities"][c] for c in classes] for r in results]), [r["predicted"] for r in results]


def every_consumer(run_dir: Path, onnx_path: Path, tmp_path: Path) -> tuple[list[Path], list[str], Views]:
    files, classes, probs, decided = from_predictions_csv(run_dir)
    views: Views = {"predictions.csv": (probs, decided),
                    "predict -m <run>": from_predict_command(run_dir, files, classes, tmp_path),
                    "serve <run dir>": from_server(run_dir, files, classes),
                    "serve <.onnx>": from_server(onnx_path, files, classes)}
    return files, classes, views


def assert_agree(views: Views) -> float:
    """Every consumer against predictions.csv: probabilities to 1e-4, decisions exactly; the largest ONNX vs
    checkpoint difference."""
    ref_probs, ref_decided = views["predictions.csv"]
    for name, (probs, decided) in views.items():
        delta = float(np.abs(probs - ref_probs).max())
        assert delta <= TOLERANCE, f"{name} differs from predictions.csv by {delta:.2e}"
        assert decided == ref_decided, f"{name} decides differently from predictions.csv"
    return float(np.abs(views["serve <.onnx>"][0] - views["serve <run dir>"][0]).max())


def test_a_tta_run_is_the_same_model_in_every_consumer(tta_run: Path, tmp_path: Path) -> None:
    exported = onnx_export.export(tta_run, tmp_path / "tta.onnx")
    assert exported["tta"] == TTA and "test images" in exported["parity_images"]
    meta = {p.key: p.value for p in onnx.load(str(exported["path"])).metadata_props}
    assert onnx_schema.OnnxModelInfo.from_metadata(meta).tta == TTA
    files, classes, views = every_consumer(tta_run, exported["path"], tmp_path)
    assert len(files) == 40 and len(classes) == 10
    onnx_vs_ckpt = assert_agree(views)
    # the shipped model scores what the run reported
    truth = [p.parent.name for p in files]
    onnx_acc = np.mean([d == t for d, t in zip(views["serve <.onnx>"][1], truth)])
    assert onnx_acc == pytest.approx(json.loads((tta_run / "metrics.json").read_text())["test/acc"], abs=1e-6)
    # and the views matter: without them the probabilities are another model's (what the old export shipped)
    model = load_classifier(tta_run / "checkpoints" / "best.ckpt")
    images = np.stack([load_model(tta_run).decode(p) for p in files])
    with torch.no_grad():
        no_tta = model.probabilities(model(torch.from_numpy(images))).numpy()
    tta_effect = float(np.abs(no_tta - views["predictions.csv"][0]).max())
    print(f"\nTTA run: max |ONNX - checkpoint| {onnx_vs_ckpt:.2e}, export parity {exported['max_abs_diff']:.2e}, "
          f"TTA-free forward off by {tta_effect:.2e}")
    assert tta_effect > 10 * TOLERANCE


def test_a_binary_run_decides_at_its_operating_point_in_every_consumer(binary_run: Path, tmp_path: Path) -> None:
    point = json.loads((binary_run / "operating_point.json").read_text())
    assert point["goal"] == "recall>=0.9"
    exported = onnx_export.export(binary_run, tmp_path / "op.onnx")
    assert exported["threshold"] == pytest.approx(point["threshold"])
    files, classes, views = every_consumer(binary_run, exported["path"], tmp_path)
    assert classes == ["cat", "dog"]
    onnx_vs_ckpt = assert_agree(views)
    probs, decided = views["serve <.onnx>"]
    assert decided == [classes[int(p >= point["threshold"])] for p in probs[:, 1]]  # the threshold, not argmax
    print(f"\nbinary run: threshold {point['threshold']:.4f}, max |ONNX - checkpoint| {onnx_vs_ckpt:.2e}, "
          f"{sum(d != classes[int(np.argmax(p))] for d, p in zip(decided, probs))} of {len(files)} decisions differ "
          "from argmax")


def test_a_run_dir_copied_elsewhere_keeps_its_decisions(binary_run: Path, tmp_path: Path) -> None:
    """The threshold comes from the run dir the model is loaded from, whatever its location."""
    copy = tmp_path / "pets_op" / "runs" / "t1"
    shutil.copytree(binary_run, copy)
    (copy / "operating_point.json").write_text(json.dumps({"goal": "test", "threshold": 1.01}))
    model = load_model(copy)
    assert model.threshold == 1.01
    files, _, _, _ = from_predictions_csv(binary_run)
    probs, decided = model.classify(np.stack([model.decode(p) for p in files]))
    assert set(decided.tolist()) == {0}
