"""python -m lit_vision.export: an ONNX model that computes what the checkpoint's evaluation computes (test-time
augmentation included; tests/test_deploy_parity.py checks a TTA run in every consumer), and says what it is —
a data=shards model's evaluation crop included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lit_vision.commands.export import main
from lit_vision.deploy import onnx_export
from lit_vision.deploy.loader import load_model
from lit_vision.deploy.onnx_schema import OnnxModelInfo, SchemaError

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
    import json

    meta = {p.key: p.value for p in onnx.load(str(exported["path"])).metadata_props}
    info = OnnxModelInfo.from_metadata(meta)
    assert info.class_names == ["cat", "dog"] and (info.channels, info.height, info.width) == (3, 16, 16)
    assert info.tta == {"hflip": False, "translate": 0} and info.model == "convnet"
    stored = json.loads((cnn_run / "operating_point.json").read_text())["threshold"]
    assert info.threshold == pytest.approx(stored) and info.positive_class == "dog"
    assert OnnxModelInfo.from_metadata(info.to_metadata()) == info
    assert info.crop_fraction is None and "crop_fraction" not in json.loads(meta["input"])  # in-memory data: squash


def test_a_crop_fraction_round_trips_and_old_metadata_has_none() -> None:
    info = OnnxModelInfo(class_names=["a", "b"], channels=3, height=24, width=32, crop_fraction=0.875)
    meta = info.to_metadata()
    assert OnnxModelInfo.from_metadata(meta) == info
    older = {**meta, "input": '{"dtype": "uint8", "layout": "NCHW", "channels": 3, "height": 24, "width": 32}'}
    assert OnnxModelInfo.from_metadata(older).crop_fraction is None  # exports from before the key: the squash
    with pytest.raises(SchemaError, match="crop_fraction"):
        OnnxModelInfo.from_metadata({**meta, "input": meta["input"].replace("0.875", "1.5")})


def test_a_shards_models_export_is_served_through_its_crop(cli_run: Path, tmp_path: Path) -> None:
    """The crop a data=shards checkpoint stores travels in the export's metadata: onnxruntime alone (the torch-free
    server) decodes the photo as the checkpoint does, and predicts what the checkpoint predicts."""
    import shutil

    from test_predict import wide_photo, with_crop_fraction

    run_dir = tmp_path / "shards" / "runs" / "t0"
    shutil.copytree(cli_run, run_dir)
    best = run_dir / "checkpoints" / "best.ckpt"
    with_crop_fraction(best, best, 0.5)
    path = onnx_export.export(run_dir, tmp_path / "shards.onnx")["path"]
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert OnnxModelInfo.from_metadata(meta).crop_fraction == 0.5
    served, checkpoint = load_model(path), load_model(run_dir)
    assert served.backend == "onnxruntime" and served.metadata()["input"] == checkpoint.metadata()["input"]
    assert served.metadata()["input"]["crop_fraction"] == 0.5
    photo = wide_photo(tmp_path / "wide.png")
    np.testing.assert_array_equal(served.decode(photo), checkpoint.decode(photo))
    np.testing.assert_allclose(served.predict(served.decode(photo)[None]),
                               checkpoint.predict(checkpoint.decode(photo)[None]), atol=1e-5)


@pytest.mark.parametrize("batch", [1, 5])
def test_any_batch_size_gives_the_checkpoints_probabilities(exported: dict, cnn_run: Path, batch: int) -> None:
    """The bare onnxruntime session (what a user of the file runs) against the checkpoint backend."""
    session = ort.InferenceSession(str(exported["path"]), providers=["CPUExecutionProvider"])
    images = np.random.default_rng(batch).integers(0, 256, (batch, 3, 16, 16), dtype=np.uint8)
    got = session.run(None, {"images": images})[0]
    want = load_model(cnn_run).predict(images)
    assert got.shape == (batch, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_parity_failure_fails_the_export_and_removes_the_file(cnn_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_export, "PARITY_TOLERANCE", -1.0)
    out = tmp_path / "bad.onnx"
    with pytest.raises(onnx_export.ExportError, match="differs from the checkpoint"):
        onnx_export.export(cnn_run, out)
    assert not out.exists()


def test_the_command_reports_and_refuses_what_is_not_a_model(cnn_run: Path, tmp_path: Path, capsys) -> None:
    main([str(cnn_run), "--out", str(tmp_path / "m.onnx")])
    assert "max |Δ probability|" in capsys.readouterr().out and (tmp_path / "m.onnx").is_file()
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nowhere")])
    assert exit_info.value.code == 1  # a missing or damaged file: exit 1 (README), as predict and serve
    assert "no such file or folder" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_one_line_naming_it(cnn_run: Path, tmp_path: Path, capsys) -> None:
    import shutil

    run_dir = tmp_path / "pets_cnn" / "runs" / "t9"
    shutil.copytree(cnn_run, run_dir)
    best = run_dir / "checkpoints" / "best.ckpt"
    best.write_bytes(best.read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and len(err.strip().splitlines()) == 1
    assert str(best) in err and "damaged" in err and not (run_dir / "model.onnx").exists()
