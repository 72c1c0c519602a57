"""``python -m lit_vision.prepare``: an image folder written as streaming shards, and the shard directory's checks.

What a preparation writes (manifest, splits, counts, pixel statistics, every photo upright at ``short_side`` with its
aspect ratio), the photo formats it reads (HEIC, AVIF, RGBA/palette/16-bit PNG, one or three channels), unreadable
files (reported like image folders, ``data.skip_corrupt``), resuming after a kill (in-process with small parts, and a
real SIGKILLed subprocess), the refusals (other settings, unused data keys, bad values, foreign directories), and the
refusals of ``data=shards`` for a shard directory that is missing, partial, of another version, an image folder or
damaged (a truncated chunk, a chunk of garbage read through the loader), and for wrong data=shards keys.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import compose_config
from hydra.utils import instantiate
from PIL import Image

from lit_vision.commands import prepare as prepare_command
from lit_vision.commands import train as train_command
from lit_vision.commands.runner import EXIT_CONFIG, EXIT_OTHER, execute
from lit_vision.data import shards
from lit_vision.data.image_folder import load_image_folders, split_dirs
from lit_vision.data.preparation import PrepareSettings, prepare_shards
from lit_vision.data.shards import ShardsCorruptError, ShardsError, open_shards
from lit_vision.errors import ConfigError, CorruptImageError, DataNotFoundError
from lit_vision.imaging import register_heif

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["a", "b", "c"]
COLOURS = {"a": (210, 40, 40), "b": (40, 190, 60), "c": (50, 60, 220)}
#: source sizes (w, h) cycled through: all larger than SHORT_SIDE, landscape and portrait
SIZES = [(60, 40), (120, 90), (90, 60), (40, 70), (100, 64)]
SHORT_SIDE = 32
#: train a:8 b:12 c:20 with val_fraction 0.25 holds out a:2 b:3 c:5 (stratified)
TRAIN_COUNTS = {"a": 8, "b": 12, "c": 20}
VAL_FRACTION = 0.25


# --- photo folders ---------------------------------------------------------------------------------------------
def picture(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    """A smooth RGB picture of ``size`` (w, h) around ``colour`` (compresses small, decodes fast)."""
    w, h = size
    x = np.linspace(0.75, 1.0, w)[None, :, None]
    y = np.linspace(0.85, 1.0, h)[:, None, None]
    return Image.fromarray((np.asarray(colour, dtype=np.float64) * x * y).astype(np.uint8), "RGB")


def write_photos(root: Path, split: str, counts: dict[str, int], sizes: list[tuple[int, int]] = SIZES) -> list[Path]:
    written = []
    for name, n in counts.items():
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            path = folder / f"{i:03d}.jpg"
            picture(sizes[i % len(sizes)], COLOURS[name]).save(path, quality=95)
            written.append(path)
    return written


def write_rotated(path: Path) -> None:
    """An 80x60 landscape photo stored as a phone does: pixels turned to 60x80 plus EXIF Orientation 6 (turn it
    90 degrees clockwise to show it). Its top-left quarter is white, the rest blue."""
    upright = Image.new("RGB", (80, 60), (30, 30, 200))
    upright.paste((255, 255, 255), (0, 0, 40, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)


def prepare_cmd(run_dir: Path, *overrides: str) -> None:
    """The prepare command in-process, as its command line runs it (validation, check, run; exits on user error)."""
    if not any(o.startswith("data=") for o in overrides):
        overrides = ("data=image_folder", *overrides)
    cfg = compose_config(list(overrides), run_dir, "prepare")
    execute(prepare_command.run, cfg, prepare_command.check)


def exits(code: int, call: Callable[[], Any]) -> None:
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == code


def error_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)


def manifest(out: Path) -> dict[str, Any]:
    return json.loads((out / shards.MANIFEST).read_text())


def set_manifest(out: Path, **changes: Any) -> None:
    (out / shards.MANIFEST).write_text(json.dumps({**manifest(out), **changes}))


def samples(split_dir: Path) -> list[dict[str, Any]]:
    from litdata import StreamingDataset

    data = StreamingDataset(str(split_dir))
    return [data[i] for i in range(len(data))]


def stored(item: dict[str, Any]) -> Image.Image:
    img = Image.open(io.BytesIO(item["image"]))
    assert img.format == "JPEG"
    img.load()
    return img


def record_mtimes(out: Path) -> dict[str, int]:
    return {str(p.relative_to(out)): p.stat().st_mtime_ns for p in sorted(out.glob("*/parts/*.json"))}


@pytest.fixture
def count_parts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """The parts written from now on, as (split, part), counted at :func:`shards.write_part` (workers=1)."""
    written: list[tuple[str, int]] = []
    original = shards.write_part

    def write_part(job: shards.PartJob) -> dict[str, Any]:
        written.append((Path(job.split_dir).name, job.part))
        return original(job)

    write_part.__wrapped__ = original  # type: ignore[attr-defined]
    monkeypatch.setattr(shards, "write_part", write_part)
    return written


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/<a,b,c> (no val folder), test/<a,b,c> plus a photo smaller than SHORT_SIDE and an EXIF-rotated one."""
    root = tmp_path_factory.mktemp("photos")
    write_photos(root, "train", TRAIN_COUNTS)
    write_photos(root, "test", {"a": 3, "b": 3, "c": 3})
    picture((24, 20), COLOURS["a"]).save(root / "test" / "a" / "small.jpg", quality=95)
    write_rotated(root / "test" / "b" / "rotated.jpg")
    return root


@pytest.fixture(scope="module")
def shard_dir(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``photos`` prepared by the command (read only: tests that damage it work on a copy)."""
    out = tmp_path_factory.mktemp("shards") / "set"
    prepare_cmd(tmp_path_factory.mktemp("run"), f"data.root={photos}", f"out={out}", f"short_side={SHORT_SIDE}",
                "workers=1", f"data.val_fraction={VAL_FRACTION}")
    return out


def copy_of(shard_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shard_dir, tmp_path / "copy"))


# --- 1. what a preparation writes ----------------------------------------------------------------------------
def test_prepare_writes_a_complete_shard_dir_with_counts_splits_and_pixel_stats(photos: Path, shard_dir: Path) -> None:
    m = manifest(shard_dir)
    assert m["complete"] is True and m["format"] == shards.FORMAT and m["version"] == shards.SHARDS_VERSION
    assert m["class_names"] == CLASSES and m["settings"]["short_side"] == SHORT_SIDE and m["unreadable"] == []
    assert m["splits"]["train"]["class_counts"] == {"a": 6, "b": 9, "c": 15}
    assert m["splits"]["val"]["class_counts"] == {"a": 2, "b": 3, "c": 5}  # stratified val_fraction of train
    assert m["splits"]["test"]["class_counts"] == {"a": 4, "b": 4, "c": 3}
    assert {s: m["splits"][s]["count"] for s in ("train", "val", "test")} == {"train": 30, "val": 10, "test": 11}
    assert len(m["mean"]) == len(m["std"]) == 3 and all(0 < v < 1 for v in m["mean"] + m["std"])
    train, val = (set((shard_dir / s / shards.SOURCES_FILE).read_text().splitlines()) for s in ("train", "val"))
    assert not train & val and train | val == {str(p) for p in (photos / "train").rglob("*.jpg")}
    shard_set = open_shards(shard_dir)
    assert shard_set.splits == ["train", "val", "test"] and shard_set.class_names == CLASSES


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_every_stored_photo_has_short_side_and_its_aspect_ratio_and_a_smaller_one_is_kept(shard_dir: Path,
                                                                                          split: str) -> None:
    sources = (shard_dir / split / shards.SOURCES_FILE).read_text().splitlines()
    labels = np.load(shard_dir / split / shards.LABELS_FILE)
    items = samples(shard_dir / split)
    assert len(items) == len(sources) == len(labels) == manifest(shard_dir)["splits"][split]["count"]
    kept = 0
    for i, (item, source) in enumerate(zip(items, sources)):
        assert item["index"] == i and item["label"] == labels[i] == CLASSES.index(Path(source).parent.name)
        img = stored(item)
        assert img.mode == "RGB"
        with Image.open(source) as src:
            w, h = src.size
        if Path(source).name == "rotated.jpg":
            continue  # upright: tested on its own
        if min(w, h) <= SHORT_SIDE:
            assert img.size == (w, h)  # never enlarged
            kept += 1
            continue
        scale = SHORT_SIDE / min(w, h)
        assert min(img.size) == SHORT_SIDE and img.size == (round(w * scale), round(h * scale)), source
        assert abs(img.width / img.height - w / h) < 0.03
    assert kept == (1 if split == "test" else 0)


# --- 2. EXIF orientation ----------------------------------------------------------------------------------------
def test_exif_orientation_is_applied(shard_dir: Path) -> None:
    sources = (shard_dir / "test" / shards.SOURCES_FILE).read_text().splitlines()
    i = next(i for i, s in enumerate(sources) if s.endswith("rotated.jpg"))
    with Image.open(sources[i]) as raw:
        assert raw.size == (60, 80)  # the file's pixels are portrait
    img = stored(samples(shard_dir / "test")[i])
    assert img.size == (43, 32)  # the upright 80x60, shorter side 32
    pixels = np.asarray(img, dtype=np.int64)
    assert pixels[3, 3].min() > 200 and pixels[-3, -3, 2] > 150 > pixels[-3, -3, 0]  # white top-left, blue elsewhere


# --- 3. photo formats and modes ------------------------------------------------------------------------------------
FORMATS = {"heic.heic": "HEIF", "avif.avif": "AVIF", "rgba.png": "RGBA", "palette.png": "P"}


@pytest.fixture(scope="module")
def format_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("formats")
    write_photos(root, "train", {"a": 2, "b": 2})
    folder = root / "train" / "a"
    base = picture((80, 60), (180, 120, 60))
    assert register_heif()  # pillow-heif writes the HEIC (lit_vision registers it only to read one)
    base.save(folder / "heic.heic", format="HEIF", quality=95)
    base.save(folder / "avif.avif", format="AVIF", quality=95)
    rgba = base.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(folder / "rgba.png")
    base.quantize(64).save(folder / "palette.png")
    gradient = np.tile(np.linspace(0, 65535, 80), (60, 1)).astype(np.uint16)  # dark left, bright right
    Image.fromarray(gradient).save(folder / "gray16.png")
    with Image.open(folder / "gray16.png") as check:
        assert check.mode.startswith("I")  # a 16-bit PNG
    return root


@pytest.mark.parametrize("channels", [3, 1])
def test_heic_avif_rgba_palette_and_16_bit_png_are_read(format_photos: Path, tmp_path: Path, channels: int) -> None:
    out = tmp_path / "out"
    prepare_cmd(tmp_path / "run", f"data.root={format_photos}", f"out={out}", f"short_side={SHORT_SIDE}", "workers=1",
                f"data.channels={channels}", "data.val_fraction=0.2")
    m = manifest(out)
    assert m["unreadable"] == [] and m["settings"]["channels"] == channels and len(m["mean"]) == channels
    by_source = {}
    for split in ("train", "val"):
        sources = (out / split / shards.SOURCES_FILE).read_text().splitlines()
        by_source |= {Path(s).name: item for s, item in zip(sources, samples(out / split))}
    assert set(FORMATS) | {"gray16.png"} <= set(by_source)
    for name in [*FORMATS, "gray16.png"]:
        img = stored(by_source[name])
        assert img.size == (43, 32) and img.mode == ("RGB" if channels == 3 else "L"), name
    for name in FORMATS:  # the picture itself, not a blank: its colour survives
        pixels = np.asarray(stored(by_source[name]).convert("RGB"), dtype=np.float64).mean((0, 1))
        expected = np.asarray(picture((80, 60), (180, 120, 60))).mean((0, 1))
        if channels == 1:
            expected = np.full(3, expected @ [0.299, 0.587, 0.114])
        assert np.abs(pixels - expected).max() < 12, (name, pixels, expected)


def test_a_16_bit_png_keeps_its_tones(format_photos: Path) -> None:
    from lit_vision.imaging import open_upright

    pixels = np.asarray(open_upright(format_photos / "train" / "a" / "gray16.png", 1, SHORT_SIDE), dtype=np.float64)
    columns = pixels.mean(0)
    assert columns[0] < 30 and 100 < columns[len(columns) // 2] < 160 and columns[-1] > 225  # a dark-to-light ramp


# --- 4. non-image and unreadable files -----------------------------------------------------------------------
def test_a_non_image_file_is_not_read_and_warned_about_as_image_folders_do(tmp_path: Path,
                                                                            caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "photos"
    write_photos(root, "train", {"a": 4, "b": 4})
    (root / "train" / "b" / "readme.txt").write_text("not a photo")
    with caplog.at_level(logging.WARNING):
        load_image_folders([root / "train"], channels=3, size=(16, 16))
    folder_warnings = [r.getMessage() for r in caplog.records if "readme.txt" in r.getMessage()]
    caplog.clear()
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        prepare_cmd(tmp_path / "run", f"data.root={root}", f"out={out}", f"short_side={SHORT_SIDE}", "workers=1")
    assert len(folder_warnings) == 1 and "1 entry without an image extension not read: b/readme.txt" in \
        folder_warnings[0]
    assert [r.getMessage() for r in caplog.records if "readme.txt" in r.getMessage()] == folder_warnings
    m = manifest(out)
    assert m["complete"] and m["unreadable"] == [] and m["splits"]["train"]["count"] + m["splits"]["val"]["count"] == 8
    assert "readme.txt" not in (out / "train" / shards.SOURCES_FILE).read_text()


def test_a_corrupt_photo_fails_naming_it_and_skip_corrupt_finishes_without_redoing_parts(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, count_parts: list[tuple[str, int]]) -> None:
    root = tmp_path / "photos"
    write_photos(root, "train", {"a": 5, "b": 5})
    write_photos(root, "test", {"a": 2, "b": 2})
    broken = root / "train" / "b" / "broken.jpg"
    good = (root / "train" / "b" / "000.jpg").read_bytes()
    broken.write_bytes(good[: len(good) // 3])  # a cut-off JPEG
    args = (f"data.root={root}", f"out={tmp_path / 'out'}", f"short_side={SHORT_SIDE}", "workers=1")
    out = tmp_path / "out"

    exits(EXIT_OTHER, lambda: prepare_cmd(tmp_path / "run", *args))
    assert str(broken) in error_text(caplog) and "data.skip_corrupt=true" in error_text(caplog)
    with pytest.raises(CorruptImageError, match=str(broken)):
        prepare_shards(split_dirs(root), tmp_path / "lib", PrepareSettings(SHORT_SIDE, 90, 3, False, 0.1, True, 0), 1,
                       "test")
    assert manifest(out)["complete"] is False
    with pytest.raises(ShardsError, match="partial"):
        open_shards(out)
    written, mtimes = len(count_parts), record_mtimes(out)
    assert written >= 3 and len(mtimes) == 3  # train, val and test: one part each

    prepare_cmd(tmp_path / "run2", *args, "data.skip_corrupt=true")
    assert len(count_parts) == written and record_mtimes(out) == mtimes  # the finished parts were not redone
    m = manifest(out)
    assert m["complete"] is True and [p for p, _ in m["unreadable"]] == [str(broken)]
    assert m["splits"]["train"]["count"] + m["splits"]["val"]["count"] == 10  # every good photo, not the broken one
    assert str(broken) not in "".join((out / s / shards.SOURCES_FILE).read_text() for s in ("train", "val"))
    assert open_shards(out).count("test") == 4


# --- 5. resuming ---------------------------------------------------------------------------------------------------
def test_a_killed_preparation_resumes_with_the_unfinished_part_only_and_equals_a_clean_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count_parts: list[tuple[str, int]]) -> None:
    monkeypatch.setattr(shards, "PART_SIZE", 4)
    root = tmp_path / "photos"
    write_photos(root, "train", {"a": 6, "b": 6, "c": 6})
    write_photos(root, "test", {"a": 2, "b": 2, "c": 2})
    settings = PrepareSettings(SHORT_SIDE, 90, 3, False, 0.1, True, 0)
    out = tmp_path / "out"
    prepare_shards(split_dirs(root), out, settings, workers=1, command="test")
    parts = sorted(int(p.stem) for p in (out / "train" / "parts").glob("*.json"))
    assert parts == [0, 1, 2, 3]  # 16 train photos in parts of 4
    last = parts[-1]
    # what a kill while the last train part was being written leaves behind
    (out / "train" / "parts" / f"{last}.json").unlink()
    (out / "train" / f"chunk-{last}-0.bin").unlink()
    (out / "train" / shards.INDEX).unlink()
    set_manifest(out, complete=False)
    mtimes = record_mtimes(out)
    count_parts.clear()

    resumed = prepare_shards(split_dirs(root), out, settings, workers=1, command="test")
    assert count_parts == [("train", last)]  # only the unfinished part was written again
    after = record_mtimes(out)
    assert f"train/parts/{last}.json" in after and f"train/parts/{last}.json" not in mtimes
    assert {k: v for k, v in after.items() if k != f"train/parts/{last}.json"} == mtimes  # the others untouched

    monkeypatch.setattr(shards, "write_part", shards.write_part.__wrapped__)  # worker processes pickle it
    clean = prepare_shards(split_dirs(root), tmp_path / "clean", settings, workers=2, command="test")
    for split in ("train", "val", "test"):
        assert (out / split / shards.SOURCES_FILE).read_text() == \
            (tmp_path / "clean" / split / shards.SOURCES_FILE).read_text()
        assert np.array_equal(resumed.labels(split), clean.labels(split))
        assert resumed.class_counts(split) == clean.class_counts(split)
        assert [s["image"] for s in samples(out / split)] == [s["image"] for s in samples(tmp_path / "clean" / split)]
    assert resumed.manifest["splits"] == clean.manifest["splits"] and resumed.manifest["mean"] == clean.manifest["mean"]


def test_a_sigkilled_prepare_command_finishes_when_run_again(tmp_path: Path,
                                                              count_parts: list[tuple[str, int]]) -> None:
    root = tmp_path / "photos"
    files = write_photos(root, "train", {"a": 100, "b": 100, "c": 100})  # 270 train photos: parts of 256 and 14
    # what is left after the first part (train's second, val, test) takes a while: the kill lands mid-way
    files += write_photos(root, "test", {"a": 60, "b": 60, "c": 60}, sizes=[(640, 480)])
    out = tmp_path / "out"
    args = ["data=image_folder", f"data.root={root}", f"out={out}", "workers=1"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.Popen([sys.executable, "-m", "lit_vision.prepare", *args, f"hydra.run.dir={tmp_path / 'run'}"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = out / "train" / "parts" / "0.json"
    deadline = time.monotonic() + 120
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=30)
    assert first.exists(), f"prepare ended (rc {proc.returncode}) before its first part: {stderr.decode()[-2000:]}"
    assert proc.returncode == -signal.SIGKILL, "prepare finished before it could be killed mid-way"
    assert manifest(out)["complete"] is False
    with pytest.raises(ShardsError, match="partial"):
        open_shards(out)
    record = first.stat().st_mtime_ns

    prepare_cmd(tmp_path / "run2", *args)  # the same command again
    assert ("train", 0) not in count_parts and first.stat().st_mtime_ns == record  # part 0 was kept
    done = open_shards(out)
    assert sum(done.count(s) for s in done.splits) == len(files)
    assert sorted(s for split in done.splits for s in done.sources(split)) == sorted(str(f) for f in files)


# --- 6. refusing to mix preparations ---------------------------------------------------------------------------
def test_another_short_side_into_the_same_out_is_refused(photos: Path, shard_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    before = (shard_dir / shards.MANIFEST).stat().st_mtime_ns
    exits(EXIT_OTHER, lambda: prepare_cmd(tmp_path / "run", f"data.root={photos}", f"out={shard_dir}",
                                          "short_side=48", "workers=1", f"data.val_fraction={VAL_FRACTION}"))
    msg = error_text(caplog)
    assert "short_side: 32 there vs 48 now" in msg and "choose a new out=" in msg and f"delete {shard_dir}" in msg
    assert (shard_dir / shards.MANIFEST).stat().st_mtime_ns == before


def test_the_same_command_on_a_complete_dir_does_nothing(photos: Path, shard_dir: Path, tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture,
                                                         count_parts: list[tuple[str, int]]) -> None:
    before = (shard_dir / shards.MANIFEST).stat().st_mtime_ns
    with caplog.at_level(logging.INFO):
        prepare_cmd(tmp_path / "run", f"data.root={photos}", f"out={shard_dir}", f"short_side={SHORT_SIDE}",
                    "workers=1", f"data.val_fraction={VAL_FRACTION}")
    assert count_parts == [] and "nothing to do" in caplog.text
    assert (shard_dir / shards.MANIFEST).stat().st_mtime_ns == before


def test_an_out_dir_with_unrelated_files_is_refused(photos: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    exits(EXIT_OTHER, lambda: prepare_cmd(tmp_path / "run", f"data.root={photos}", f"out={out}", "workers=1"))
    assert f"out={out} exists, is not empty" in error_text(caplog) and "new out=" in error_text(caplog)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


# --- 7. settings prepare does not use, bad values -------------------------------------------------------------
@pytest.mark.parametrize("override, named", [
    ("data.batch_size=7", "data.batch_size=7 is not used by prepare"),
    ("data.image_size=[32,32]", "data.image_size=[32, 32] is not used by prepare"),
    ("quality=101", "quality=101"),
    ("short_side=0", "short_side=0"),
    ("workers=0", "workers=0"),
    ("data=digits", "data=digits"),
])
def test_settings_prepare_does_not_use_and_bad_values_exit_2_naming_the_key(
        override: str, named: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "out"
    # data.root does not exist: had any file been read, the run would fail with exit 1 (DataNotFoundError)
    overrides = [override] if override.startswith("data=") else \
        ["data=image_folder", override, f"data.root={tmp_path / 'nowhere'}"]
    exits(EXIT_CONFIG, lambda: prepare_cmd(tmp_path / "run", *overrides, f"out={out}"))
    assert named in error_text(caplog) and "\n" not in error_text(caplog)  # one line
    assert not out.exists()  # refused before anything is read or written


# --- 8. shard directories data=shards refuses ----------------------------------------------------------------
def shards_module(tmp_path: Path, root: Path | None) -> Any:
    cfg = compose_config(["data=shards", f"data.root={root if root is not None else 'null'}", "data.image_size=16",
                          "data.num_workers=0", "data.eval_batch_size=64"], tmp_path / "run")
    return instantiate(cfg.data)


def test_a_missing_or_unset_shard_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=str(tmp_path / "nowhere")):
        shards_module(tmp_path, tmp_path / "nowhere").setup()
    with pytest.raises(ConfigError, match="data.root"):
        shards_module(tmp_path, None).setup()
    with pytest.raises(ConfigError, match="data.root"):
        open_shards(None)


def test_a_partial_preparation_is_refused_with_the_command_to_finish_it(shard_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(shard_dir, tmp_path)
    set_manifest(copy, complete=False, command="python -m lit_vision.prepare data.root=x out=y")
    with pytest.raises(ShardsError, match="partial") as err:
        shards_module(tmp_path, copy).setup()
    assert "run the same command again" in str(err.value) and "python -m lit_vision.prepare data.root=x out=y" in \
        str(err.value)


def test_shards_of_another_version_are_refused_naming_it(shard_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(shard_dir, tmp_path)
    set_manifest(copy, version=99)
    with pytest.raises(ShardsError, match="version 99") as err:
        shards_module(tmp_path, copy).setup()
    assert f"reads version {shards.SHARDS_VERSION}" in str(err.value) and "prepare the shards again" in str(err.value)


def test_an_image_folder_as_shard_dir_is_refused_suggesting_prepare(photos: Path, tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match="lit_vision.prepare") as err:
        shards_module(tmp_path, photos).setup()
    assert "looks like an image folder" in str(err.value) and f"data.root={photos}" in str(err.value)


def test_a_truncated_chunk_is_refused_naming_it_and_the_photos_lost(shard_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(shard_dir, tmp_path)
    chunk = copy / "train" / "chunk-0-0.bin"
    data = chunk.read_bytes()
    chunk.write_bytes(data[:-100])
    with pytest.raises(ShardsCorruptError) as err:
        shards_module(tmp_path, copy).setup()
    msg = str(err.value)
    first_source = (copy / "train" / shards.SOURCES_FILE).read_text().splitlines()[0]
    assert str(chunk) in msg and "samples 0-" in msg and first_source in msg
    assert f"{len(data) - 100:,} bytes instead of {len(data):,}" in msg


def test_a_chunk_of_garbage_fails_the_loader_naming_it(shard_dir: Path, tmp_path: Path) -> None:
    copy = copy_of(shard_dir, tmp_path)
    chunk = copy / "val" / "chunk-0-0.bin"
    data = bytearray(chunk.read_bytes())
    data[len(data) // 4: 3 * len(data) // 4] = bytes(3 * len(data) // 4 - len(data) // 4)  # same size, zeros
    chunk.write_bytes(bytes(data))
    dm = shards_module(tmp_path, copy)
    dm.setup()  # the sizes are right: found when read
    with pytest.raises(ShardsCorruptError) as err:
        next(iter(dm.val_dataloader()))
    assert str(chunk) in str(err.value) and "of the val split" in str(err.value)


# --- 9. wrong data=shards keys for training ----------------------------------------------------------------
@pytest.mark.parametrize("override, named", [
    ("data.crop_scale=[0.5,0.1]", "data.crop_scale"),
    ("data.eval_crop_fraction=0", "data.eval_crop_fraction"),
    ("+data.foo=1", "data.foo"),
    ("data.augment.crop_padding=4", "data.augment.crop_padding"),
])
def test_train_with_a_wrong_shards_key_exits_2_before_reading_data(override: str, named: str, tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    # data.root does not exist: had any data been read, the run would fail with exit 1 (DataNotFoundError)
    cfg = compose_config(["data=shards", f"data.root={tmp_path / 'nowhere'}", override, "accelerator=cpu"],
                         tmp_path / "run")
    exits(EXIT_CONFIG, lambda: execute(train_command.run, cfg, train_command.check_options))
    assert named in error_text(caplog) and "nowhere" not in error_text(caplog)


def test_train_command_line_with_a_wrong_shards_key_exits_2_with_one_line(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "lit_vision.train", "data=shards", f"data.root={tmp_path / 'nowhere'}",
                          "+data.foo=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, capture_output=True,
                         text=True, timeout=120, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    text = res.stdout + res.stderr
    assert res.returncode == EXIT_CONFIG, text
    assert len([line for line in text.splitlines() if "data.foo" in line]) == 1 and "Traceback" not in text
    assert "nowhere" not in text
