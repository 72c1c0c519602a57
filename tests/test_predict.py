"""python -m lit_vision.predict: several models, folders/globs, true labels, ensembles, unreadable files; a
data=shards model's photos decoded through its evaluation crop."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from lit_vision.commands.predict import main, run
from lit_vision.deploy.ensembles import majority_vote
from lit_vision.deploy.loader import load_model


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_predictions_match_the_training_pipeline(cnn_run: Path):
    """Preprocessing is the training one: probabilities on the test files equal the run's predictions.csv."""
    pred = load_model(cnn_run)
    rows = read_csv(cnn_run / "predictions.csv")
    from lit_vision.deploy.inference import decode_for

    paths = [Path(r["source"]) for r in rows]
    images, ok = decode_for(paths, pred.channels, pred.image_size, {})
    assert len(ok) == len(rows)
    probs = pred.predict(images)
    expected = np.array([[float(r["p_cat"]), float(r["p_dog"])] for r in rows])
    assert np.allclose(probs, expected, atol=1e-4)


def test_predict_several_models_with_ensembles(cnn_run: Path, xgb_run: Path, pets_root: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    out = tmp_path / "table.csv"
    res = run(["-m", str(cnn_run / "checkpoints" / "best.ckpt"), "-m", str(xgb_run),
                str(pets_root / "test" / "cat"), str(pets_root / "test" / "dog" / "*.png"), str(broken),
                str(tmp_path / "nothing*.jpg"), "--csv", str(out)])
    printed = capsys.readouterr().out
    rows = read_csv(out)
    assert len(rows) == 11  # 10 test images + the broken file
    bad = [r for r in rows if r["error"]]
    assert [Path(r["image"]).name for r in bad] == ["broken.jpg"] and "broken.jpg" in printed
    assert "nothing*.jpg" in printed  # the empty glob is reported too
    good = [r for r in rows if not r["error"]]
    assert {r["true"] for r in good} == {"cat", "dog"}
    names = ["pets_cnn", "pets_xgb", "ensemble:mean", "ensemble:majority"]
    for name in names:
        assert f"{name}:pred" in rows[0], name
    for r in good:
        mean_dog = np.mean([float(r["pets_cnn:p_dog"]), float(r["pets_xgb:p_dog"])])
        assert float(r["ensemble:mean:p_dog"]) == pytest.approx(mean_dog, abs=1e-5)
        if r["pets_cnn:pred"] == r["pets_xgb:pred"]:
            assert r["ensemble:majority:pred"] == r["pets_cnn:pred"]
    assert set(res.probs) == set(names)
    assert "accuracy on the 10 labelled images" in printed


def test_predict_with_one_model_writes_every_row(cnn_run: Path, pets_root: Path, tmp_path: Path):
    """One model is the common case: the CSV holds its probabilities and prediction for every image, no ensembles."""
    out = tmp_path / "one.csv"
    res = run(["-m", str(cnn_run), str(pets_root / "test"), "--csv", str(out)])
    rows = read_csv(out)
    assert list(rows[0]) == ["image", "true", "error", "pets_cnn:p_cat", "pets_cnn:p_dog", "pets_cnn:pred"]
    assert len(rows) == 10 and all(r["pets_cnn:pred"] in ("cat", "dog") and not r["error"] for r in rows)
    probs = np.array([[float(r["pets_cnn:p_cat"]), float(r["pets_cnn:p_dog"])] for r in rows])
    np.testing.assert_allclose(probs, res.probs["pets_cnn"], atol=1e-6)
    assert set(res.probs) == {"pets_cnn"}


def test_bad_model_path_is_a_clear_error(tmp_path: Path, pets_root: Path, capsys: pytest.CaptureFixture):
    with pytest.raises(SystemExit) as exit_info:
        main(["-m", str(tmp_path / "missing.ckpt"), str(pets_root / "test")])
    assert exit_info.value.code == 1  # a missing file is a user error, not a config error (2)
    assert f"--model {tmp_path / 'missing.ckpt'}: no such file or folder" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path: Path, pets_root: Path, capsys: pytest.CaptureFixture):
    bad = tmp_path / "cut.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(SystemExit) as exit_info:
        main(["-m", str(bad), str(pets_root / "test")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and len(err.strip().splitlines()) == 1
    assert err.startswith(f"error: --model {bad}: checkpoint {bad} is damaged")


def test_an_exported_onnx_predicts_like_its_run(cnn_run: Path, onnx_model: Path, pets_root: Path, tmp_path: Path):
    """-m takes an export too; it is the run's model (tests/test_deploy_parity.py: every consumer, TTA runs)."""
    res = run(["-m", str(cnn_run), "-m", str(onnx_model), str(pets_root / "test"), "--csv", str(tmp_path / "x.csv")])
    np.testing.assert_allclose(res.probs["pets"], res.probs["pets_cnn"], atol=1e-4)
    assert (res.predicted("pets") == res.predicted("pets_cnn")).all()


def test_majority_vote_breaks_ties_by_mean_probability():
    stack = np.array([[[0.9, 0.1]], [[0.4, 0.6]]])  # one vote each; mean favours class 0
    assert majority_vote(stack)[0].argmax() == 0
    stack = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.3, 0.7]]])  # two votes for class 1
    assert majority_vote(stack)[0].argmax() == 1


@pytest.mark.parametrize("threshold, expected", [(1.01, "cat"), (0.0, "dog")])
def test_a_binary_run_decides_at_its_stored_operating_point(cnn_run: Path, pets_root: Path, tmp_path: Path,
                                                            threshold: float, expected: str):
    import json
    import shutil

    assert json.loads((cnn_run / "operating_point.json").read_text())["goal"] == "max_f1"  # written by training
    run_dir = tmp_path / "pets_cnn" / "runs" / "t1"
    shutil.copytree(cnn_run, run_dir)
    (run_dir / "operating_point.json").write_text(json.dumps({"goal": "test", "threshold": threshold}))
    out = tmp_path / "decided.csv"
    run(["-m", str(run_dir), str(pets_root / "test"), "--csv", str(out)])
    assert {r["pets_cnn:pred"] for r in read_csv(out)} == {expected}


# --- a data=shards model decodes as it was evaluated: shorter side resized, centre crop ------------------------------
def with_crop_fraction(ckpt: Path, out: Path, fraction: float) -> Path:
    """``ckpt`` as a data=shards run writes it: ``input_spec`` carries the evaluation view's ``crop_fraction``."""
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["input_spec"]["crop_fraction"] = fraction
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out)
    return out


def wide_photo(path: Path) -> Path:
    """64 x 32 with a distinct left quarter: the squash keeps it, a 0.5 centre crop of a 16 px model drops it."""
    from PIL import Image

    pixels = np.full((32, 64, 3), 40, dtype=np.uint8)
    pixels[:, :16] = (255, 0, 0)
    Image.fromarray(pixels).save(path)
    return path


def test_a_checkpoint_with_a_crop_fraction_decodes_through_the_crop(cnn_run: Path, tmp_path: Path):
    from lit_vision.imaging import decode_image

    old = load_model(cnn_run)  # a checkpoint without the key (the in-memory data): the squash, as before
    assert old.crop_fraction is None and "crop_fraction" not in old.metadata()["input"]
    ckpt = with_crop_fraction(cnn_run / "checkpoints" / "best.ckpt", tmp_path / "shards" / "best.ckpt", 0.5)
    model = load_model(ckpt)
    assert model.crop_fraction == 0.5 and model.metadata()["input"]["crop_fraction"] == 0.5
    photo = wide_photo(tmp_path / "wide.png")
    np.testing.assert_array_equal(model.decode(photo), decode_image(photo, 3, (16, 16), crop_fraction=0.5))
    assert not np.array_equal(model.decode(photo), old.decode(photo))
    assert (model.decode(photo)[0] < 100).all() and (old.decode(photo)[0, :, 0] == 255).all()
    res = run(["-m", str(ckpt), "-m", str(cnn_run), str(photo), "--csv", str(tmp_path / "p.csv")])
    np.testing.assert_allclose(res.probs["shards"], model.predict(model.decode(photo)[None]), atol=1e-6)
    np.testing.assert_allclose(res.probs["pets_cnn"], old.predict(old.decode(photo)[None]), atol=1e-6)


def test_models_that_crop_differently_are_decoded_apart(tmp_path: Path):
    """predict decodes once per input format: the same channels and size with another crop are another format."""
    from lit_vision.deploy.inference import predict_images
    from lit_vision.deploy.model import DeployedModel

    seen: dict[str, np.ndarray] = {}

    def model(name: str, crop_fraction: float | None) -> DeployedModel:
        def predict(images: np.ndarray) -> np.ndarray:
            seen[name] = images
            return np.full((len(images), 2), 0.5)

        return DeployedModel(name, ["a", "b"], 3, (16, 16), predict, "test", crop_fraction=crop_fraction)

    photo = wide_photo(tmp_path / "wide.png")
    predict_images([model("squash", None), model("crop", 0.5), model("crop_again", 0.5)], [photo])
    assert not np.array_equal(seen["squash"], seen["crop"]) and seen["crop"] is seen["crop_again"]


def test_phone_photos_heic_and_avif_are_predicted_and_decoded_from_uploads(cnn_run: Path, pets_root: Path,
                                                                           tmp_path: Path):
    """predict finds .heic and .avif files in a folder and reads them (pillow-heif, Pillow's AVIF); serve's
    uploads go through the same decode from bytes."""
    import io

    from PIL import Image

    from lit_vision.imaging import decode_image, register_heif

    assert register_heif()  # pillow-heif writes the HEIC (lit_vision registers it only to read one)
    photos = tmp_path / "phone"
    photos.mkdir()
    source = sorted((pets_root / "test" / "cat").iterdir())[0]
    with Image.open(source) as img:
        rgb = img.convert("RGB").resize((64, 48))
    rgb.save(photos / "a.heic", format="HEIF", quality=95)
    rgb.save(photos / "b.avif", format="AVIF", quality=95)
    out = tmp_path / "phone.csv"
    run(["-m", str(cnn_run), str(photos), "--csv", str(out)])
    rows = read_csv(out)
    assert sorted(Path(r["image"]).name for r in rows) == ["a.heic", "b.avif"]
    assert all(not r["error"] and r["pets_cnn:pred"] in ("cat", "dog") for r in rows), rows
    for name in ("a.heic", "b.avif"):
        decoded = decode_image((photos / name).read_bytes(), 3, (16, 16))
        assert decoded.shape == (3, 16, 16) and decoded.dtype == np.uint8
        reference = np.asarray(Image.open(io.BytesIO((photos / name).read_bytes())).convert("RGB").resize((16, 16)))
        assert np.abs(decoded.transpose(1, 2, 0).astype(int) - reference.astype(int)).mean() < 2
