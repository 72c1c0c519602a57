"""python -m lit_vision.export: an ONNX model that computes what the checkpoint computes, and says what it is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lit_vision.commands.export import main
from lit_vision.deploy import onnx_export
from lit_vision.training.checkpoints import load_classifier

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def exported(cli_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return onnx_export.export(cli_run, tmp_path_factory.mktemp("onnx") / "pets.onnx")


def test_export_checks_parity_on_the_runs_test_images(exported: dict) -> None:
    assert exported["path"].is_file() and exported["bytes"] > 0
    assert "test images" in exported["parity_images"]
    assert exported["max_abs_diff"] <= onnx_export.PARITY_TOLERANCE


def test_metadata_carries_classes_input_spec_and_threshold(exported: dict, cnn_run: Path) -> None:
    meta = {p.key: p.value for p in onnx.load(str(exported["path"])).metadata_props}
    assert json.loads(meta["class_names"]) == ["cat", "dog"]
    assert json.loads(meta["input"]) == {"dtype": "uint8", "layout": "NCHW", "channels": 3, "height": 16, "width": 16}
    stored = json.loads((cnn_run / "operating_point.json").read_text())["threshold"]
    assert float(meta["threshold"]) == pytest.approx(stored) and meta["positive_class"] == "dog"


@pytest.mark.parametrize("batch", [1, 5])
def test_any_batch_size_gives_the_checkpoints_probabilities(exported: dict, cnn_run: Path, batch: int) -> None:
    session = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(batch).integers(0, 256, (batch, 3, 16, 16), dtype=np.uint8)
    got = session.run(None, {"images": images})[0]
    model = load_classifier(cnn_run / "checkpoints" / "best.ckpt")
    with torch.no_grad():
        want = model.probabilities(model(torch.from_numpy(images))).numpy()
    assert got.shape == (batch, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_parity_failure_fails_the_export_and_removes_the_file(cnn_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    out = tmp_path / "bad.onnx"
    with pytest.raises(onnx_export.ExportError, match="differs from PyTorch"):
        onnx_export.export(cnn_run, out)
    assert not out.exists()


def test_the_command_reports_and_refuses_what_is_not_a_model(cnn_run: Path, tmp_path: Path, capsys) -> None:
    main([str(cnn_run), "--out", str(tmp_path / "m.onnx")])
    assert "max |Δ probability|" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code != 0
    assert "no such file or folder" in capsys.readouterr().err
