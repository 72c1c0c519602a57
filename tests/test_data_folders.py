"""Image folders as torchvision users expect: image files only (the rest named once in the log), EXIF orientation
applied (training and prediction), and an empty class folder refused; a data=shards model's photos decoded for
prediction as its evaluation saw them (shorter side resized, centre crop: torchvision's geometry)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lit_vision.data import load_source
from lit_vision.data.image_folder import decode_image, load_image_folders
from lit_vision.data.synthetic import write_image_folder
from lit_vision.deploy.inference import decode_for
from lit_vision.errors import DataNotFoundError

EXIF_ORIENTATION = 0x0112


def write_rotated_jpeg(path: Path, orientation: int = 6, width: int = 20, height: int = 10) -> np.ndarray:
    """A ``width`` x ``height`` JPEG stored sideways with an EXIF Orientation tag; returns the stored pixels as
    decoded by PIL without the tag applied (H, W, 3)."""
    rng = np.random.default_rng(orientation)
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, : width // 2] = 230  # left half bright, right half dark, plus noise: any rotation shows
    pixels = np.clip(pixels + rng.integers(0, 20, pixels.shape), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=95, exif=exif.tobytes())
    with Image.open(path) as img:
        assert img.getexif()[EXIF_ORIENTATION] == orientation and img.size == (width, height)
        return np.asarray(img.convert("RGB"))


# --- only image files are read; the others are named once ----------------------------------------------------------
def test_non_image_files_are_not_read_and_named_in_one_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "train", ["cat", "dog"], per_class=3, size=16)
    (root / "cat" / "readme.txt").write_text("collected by hand")
    (root / "dog" / "Thumbs.db").write_bytes(b"\x00" * 64)
    (root / "dog" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "dog" / "extra").mkdir()
    with caplog.at_level(logging.WARNING, logger="lit_vision.data.image_folder"):
        splits = load_source("image_folder", train_dirs=[str(root)], channels=3)
    assert splits.train.class_counts() == {"cat": 3, "dog": 3}
    assert all(p.endswith(".png") for p in splits.train.sources)
    warnings = [r for r in caplog.records if r.name == "lit_vision.data.image_folder"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert warnings[0].getMessage() == (f"{root}: 4 entries without an image extension not read: "
                                        "cat/readme.txt, dog/.DS_Store, dog/Thumbs.db, dog/extra/")


def test_the_warning_names_the_first_five_and_counts_the_rest(tmp_path, caplog):
    root = write_image_folder(tmp_path / "train", ["a"], per_class=2, size=8)
    for i in range(7):
        (root / "a" / f"note{i}.txt").write_text("x")
    with caplog.at_level(logging.WARNING, logger="lit_vision.data.image_folder"):
        arrays = load_image_folders([root], channels=1, size=None)
    assert len(arrays) == 2
    messages = [r.getMessage() for r in caplog.records if r.name == "lit_vision.data.image_folder"]
    assert messages == [f"{root}: 7 entries without an image extension not read: "
                        "a/note0.txt, a/note1.txt, a/note2.txt, a/note3.txt, a/note4.txt, … (2 more)"]


def test_a_clean_folder_logs_no_warning(tmp_path, caplog):
    root = write_image_folder(tmp_path / "train", ["a", "b"], per_class=2, size=8)
    with caplog.at_level(logging.WARNING, logger="lit_vision.data.image_folder"):
        load_image_folders([root], channels=3, size=None)
    assert [r for r in caplog.records if r.name == "lit_vision.data.image_folder"] == []


# --- EXIF orientation ------------------------------------------------------------------------------------------------
def test_exif_orientation_is_applied_when_decoding(tmp_path):
    stored = write_rotated_jpeg(tmp_path / "phone.jpg", orientation=6, width=20, height=10)
    image = decode_image(tmp_path / "phone.jpg", 3, None)
    assert image.shape == (3, 20, 10)  # height and width swapped relative to the stored pixels
    upright = np.rot90(stored, k=-1)  # orientation 6: turn 90 degrees clockwise to display
    np.testing.assert_array_equal(image, upright.transpose(2, 0, 1))


@pytest.mark.parametrize("orientation,turn", [(3, lambda a: np.rot90(a, 2)), (8, lambda a: np.rot90(a, 1)),
                                              (2, lambda a: a[:, ::-1])])
def test_other_exif_orientations(tmp_path, orientation, turn):
    stored = write_rotated_jpeg(tmp_path / "p.jpg", orientation=orientation)
    np.testing.assert_array_equal(decode_image(tmp_path / "p.jpg", 3, None), turn(stored).transpose(2, 0, 1))


def test_exif_orientation_is_applied_before_resizing(tmp_path):
    stored = write_rotated_jpeg(tmp_path / "phone.jpg", orientation=6, width=20, height=10)
    upright = Image.fromarray(np.ascontiguousarray(np.rot90(stored, k=-1))).convert("L")
    expected = np.asarray(upright.resize((5, 10), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(decode_image(tmp_path / "phone.jpg", 1, (10, 5))[0], expected)


def test_image_folder_trains_phone_photos_upright(tmp_path):
    root = tmp_path / "photos"
    stored = [write_rotated_jpeg(root / c / f"{i}.jpg", orientation=6) for c in ("a", "b") for i in range(2)]
    splits = load_source("image_folder", train_dirs=[str(root)], channels=3)
    assert splits.train.images.shape == (4, 3, 20, 10)
    np.testing.assert_array_equal(splits.train.images[0], np.rot90(stored[0], k=-1).transpose(2, 0, 1))


def test_predict_decodes_phone_photos_upright(tmp_path):
    stored = write_rotated_jpeg(tmp_path / "phone.jpg", orientation=6, width=20, height=10)
    images, rows = decode_for([tmp_path / "phone.jpg"], 3, (20, 10), {})
    assert rows == [0] and images.shape == (1, 3, 20, 10)
    np.testing.assert_array_equal(images[0], np.rot90(stored, k=-1).transpose(2, 0, 1))


# --- a data=shards model: the evaluation view (resize the shorter side, centre crop), not the squash ---------------
RED = (255, 0, 0)


def bordered_photo(path: Path, width: int = 200, height: int = 100) -> np.ndarray:
    """A ``width`` x ``height`` PNG: smooth gradients (no red), its leftmost 20 columns pure red; returns (H, W, 3)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 1] = np.linspace(64, 255, height).astype(np.uint8)[:, None]
    pixels[..., 2] = np.linspace(64, 255, width).astype(np.uint8)[None, :]
    pixels[:, :20] = RED
    Image.fromarray(pixels).save(path)
    return pixels


def torchvision_view(pixels: np.ndarray, size: list[int], crop_fraction: float) -> np.ndarray:
    """What data=shards evaluates (``streaming.resize_centre_crop``): torchvision resize + centre crop, (C, H, W)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    image = torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))
    return F.center_crop(F.resize(image, int(round(min(size) / crop_fraction)), antialias=True), size).numpy()


def is_red(image: np.ndarray) -> np.ndarray:
    return (image[0] > 200) & (image[1] < 50) & (image[2] < 50)


def test_a_crop_fraction_decodes_the_centre_crop_as_evaluation_did(tmp_path):
    pixels = bordered_photo(tmp_path / "wide.png")
    image = decode_image(tmp_path / "wide.png", 3, (32, 32), crop_fraction=0.875)
    assert image.shape == (3, 32, 32) and image.dtype == np.uint8
    assert not is_red(image).any()  # the border is outside the centre crop (shorter side 37, width 74, left 21)
    want = torchvision_view(pixels, [32, 32], 0.875)
    assert np.abs(image.astype(float) - want).mean() < 3  # PIL's and torchvision's antialiased bilinear differ a bit


def test_without_a_crop_fraction_the_image_is_squashed_as_before(tmp_path):
    bordered_photo(tmp_path / "wide.png")
    image = decode_image(tmp_path / "wide.png", 3, (32, 32))
    with Image.open(tmp_path / "wide.png") as img:
        squashed = np.asarray(img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)).transpose(2, 0, 1)
    np.testing.assert_array_equal(image, squashed)
    assert is_red(image)[:, 0].all()  # the whole width is kept, border included


@pytest.mark.parametrize("width, height, size, fraction", [
    (100, 200, [32, 32], 0.875),  # portrait: the shorter side is the width
    (201, 99, [24, 40], 0.9),  # a non-square size, odd margins (torchvision's rounding of the offset)
    (90, 90, [16, 32], 1.0),  # the crop wider than the resized image: zero padding, as torchvision pads
])
def test_the_crop_geometry_is_torchvisions(tmp_path, width, height, size, fraction):
    """On noise a crop one pixel off differs by tens of levels; PIL's antialiased bilinear and torchvision's (a port
    of it) then differ by rounding only."""
    pixels = np.random.default_rng(width).integers(1, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    image = decode_image(tmp_path / "p.png", 3, tuple(size), crop_fraction=fraction)
    want = torchvision_view(pixels, size, fraction)
    assert image.shape == want.shape == (3, *size)
    assert np.abs(image.astype(float) - want).mean() < 0.5
    np.testing.assert_array_equal((image == 0).all(0), (want == 0).all(0))  # the same padded columns, if any


def test_predict_decodes_with_the_crop_fraction_and_exif_first(tmp_path):
    stored = write_rotated_jpeg(tmp_path / "phone.jpg", orientation=6, width=40, height=20)
    images, rows = decode_for([tmp_path / "phone.jpg"], 3, (8, 8), {}, crop_fraction=0.875)
    assert rows == [0] and images.shape == (1, 3, 8, 8)
    upright = np.ascontiguousarray(np.rot90(stored, k=-1))
    assert np.abs(images[0].astype(float) - torchvision_view(upright, [8, 8], 0.875)).mean() < 3
    np.testing.assert_array_equal(images[0], decode_image(tmp_path / "phone.jpg", 3, (8, 8), 0.875))


# --- empty class folders -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", [None, "readme.txt"])
def test_an_empty_class_folder_is_refused_naming_it_and_the_fix(tmp_path, content):
    root = write_image_folder(tmp_path / "train", ["cat", "dog"], per_class=2, size=8)
    (root / "bird").mkdir()
    if content:
        (root / "bird" / content).write_text("nothing yet")
    with pytest.raises(DataNotFoundError) as err:
        load_source("image_folder", train_dirs=[str(root)])
    msg = str(err.value)
    assert msg.startswith(f"class folder(s) without any image file: ['{root / 'bird'}']")
    assert msg.endswith("Fix: delete the empty folder (the class is then not part of the data) or add images to it.")


def test_an_empty_class_folder_in_the_test_split_is_refused_too(tmp_path):
    write_image_folder(tmp_path / "d" / "train", ["cat", "dog"], per_class=2, size=8)
    write_image_folder(tmp_path / "d" / "test", ["cat"], per_class=1, size=8)
    (tmp_path / "d" / "test" / "dog").mkdir()
    with pytest.raises(DataNotFoundError, match=r"without any image file: \['.*/d/test/dog'\]"):
        load_source("image_folder", root=str(tmp_path / "d"))


def test_a_test_split_may_lack_a_class_folder(tmp_path):
    write_image_folder(tmp_path / "d" / "train", ["cat", "dog"], per_class=2, size=8)
    write_image_folder(tmp_path / "d" / "test", ["cat"], per_class=1, size=8)
    splits = load_source("image_folder", root=str(tmp_path / "d"))
    assert splits.test.class_counts() == {"cat": 1, "dog": 0}
