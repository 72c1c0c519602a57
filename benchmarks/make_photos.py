"""Write a photo-like image folder for data-loader benchmarks, made from a small labelled image folder.

    python benchmarks/make_photos.py /tmp/photos --count 20000 --source ../shared/datasets/cifar10-jpeg

Loader benchmarks on 32x32 CIFAR JPEGs measure almost nothing but Python overhead; real photo folders cost JPEG
decodes of a megapixel or more, the odd PNG and HEIC, and EXIF-rotated phone pictures. This script makes such a
folder, ``<dir>/train/<class>/NNNNNN.<ext>`` and ``<dir>/test/<class>/...`` (every ``1/--test-fraction``-th image
of a class goes to ``test``), with the class names of ``<source>/train/<class>/``. Each image is a random source
image of its class, upsampled (bicubic) to a random 4:3 or 3:4 size between 500x375 and 1600x1200, plus Gaussian
noise (sigma 6, so it neither compresses nor decodes trivially), saved as

* JPEG quality 90 (about 92%), a fifth of them stored rotated with an EXIF Orientation tag (6, 8 or 3) such that
  an EXIF-aware reader (``PIL.ImageOps.exif_transpose``) recovers the upright picture;
* PNG (about 5%) and HEIC (about 3%, quality 90, through pillow-heif).

The output is deterministic given ``--seed`` (image ``i`` draws everything from ``seed + i``), and a run skips the
images that already exist, so an interrupted run resumes. ``--smoke`` writes 24 small images, among them at least
one PNG, one HEIC and one JPEG per EXIF orientation, in a couple of seconds (for tests). Prints one summary line:
images per format, total bytes, size range and seconds.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
SUFFIX = {"jpeg": ".jpg", "png": ".png", "heic": ".heic"}
#: the transpose that stores an upright picture under each EXIF orientation (exif_transpose applies its inverse)
STORE_ROTATED = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
NOISE_SIGMA = 6.0
QUALITY = 90
SIZES = (500, 1600)  # the long side's range; the short side is 3/4 of it
SMOKE_SIZES = (64, 160)
SMOKE_COUNT = 24
#: the smoke run's first images, so that a tiny set still holds every format and orientation
SMOKE_FIRST = [("heic", 1), ("png", 1), ("jpeg", 6), ("jpeg", 8), ("jpeg", 3)]


@dataclass(frozen=True)
class Plan:
    """Everything about image ``index``, drawn from ``seed + index`` before any pixel is made."""

    index: int
    seed: int
    source: Path
    path: Path
    fmt: str
    orientation: int  # the EXIF orientation of a JPEG; 1 = upright, no tag
    size: tuple[int, int]  # the upright (width, height)


def source_classes(source: Path) -> dict[str, list[Path]]:
    """The sorted image files of each class folder under ``<source>/train``, or exit 2 naming the fix."""
    train = source / "train"
    classes = {}
    if train.is_dir():
        for folder in sorted(p for p in train.iterdir() if p.is_dir()):
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if files:
                classes[folder.name] = files
    if not classes:
        print(f"error: no source image folder at {train}/<class>/*.jpg: pass --source <folder holding "
              f"train/<class>/>, e.g. --source {DEFAULT_SOURCE}", file=sys.stderr)
        sys.exit(2)
    return classes


def split_of(k: int, test_fraction: float) -> str:
    """``test`` for the ``k``-th image of a class when it starts a new ``1/test_fraction`` block (k = 0 first)."""
    return "test" if math.ceil(k * test_fraction) < math.ceil((k + 1) * test_fraction) else "train"


def draw_size(rng: random.Random, sizes: tuple[int, int]) -> tuple[int, int]:
    """A random upright (width, height): long side in ``sizes``, roughly 4:3 (short side within 3/4 of ``sizes``),
    landscape two times in three."""
    long_side = rng.randint(*sizes)
    short_side = round(long_side * 0.75 * rng.uniform(0.97, 1.03))
    short_side = min(max(short_side, round(sizes[0] * 0.75)), round(sizes[1] * 0.75), long_side - 1)
    return (long_side, short_side) if rng.random() < 2 / 3 else (short_side, long_side)


def draw_format(rng: random.Random) -> tuple[str, int]:
    """(format, EXIF orientation): 3% HEIC, 5% PNG, else JPEG, a fifth of those rotated by 6, 8 or 3."""
    r = rng.random()
    if r < 0.03:
        return "heic", 1
    if r < 0.08:
        return "png", 1
    return "jpeg", rng.choice([6, 8, 3]) if rng.random() < 0.2 else 1


def make_plan(index: int, seed: int, out: Path, classes: dict[str, list[Path]], test_fraction: float,
              smoke: bool) -> Plan:
    names = list(classes)
    name = names[index % len(names)]
    rng = random.Random(seed + index)
    source = rng.choice(classes[name])
    size = draw_size(rng, SMOKE_SIZES if smoke else SIZES)
    fmt, orientation = draw_format(rng)
    if smoke and index < len(SMOKE_FIRST):
        fmt, orientation = SMOKE_FIRST[index]
    split = split_of(index // len(names), test_fraction)
    path = out / split / name / f"{index:06d}{SUFFIX[fmt]}"
    return Plan(index, seed + index, source, path, fmt, orientation, size)


def render(plan: Plan) -> Image.Image:
    """The upright picture: the source upsampled to ``plan.size`` plus Gaussian noise."""
    with Image.open(plan.source) as src:
        img = src.convert("RGB").resize(plan.size, Image.Resampling.BICUBIC)
    noise = np.random.default_rng(plan.seed).standard_normal((plan.size[1], plan.size[0], 3), dtype=np.float32)
    pixels = np.asarray(img, dtype=np.float32) + NOISE_SIGMA * noise
    return Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8), "RGB")


def save(img: Image.Image, plan: Plan) -> None:
    """Save atomically (a temporary name, then rename), so an interrupted run never leaves a half file."""
    tmp = plan.path.with_name(f".{plan.path.name}.tmp")
    if plan.fmt == "heic":
        img.save(tmp, format="HEIF", quality=QUALITY)
    elif plan.fmt == "png":
        img.save(tmp, format="PNG")
    elif plan.orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = plan.orientation
        img.transpose(STORE_ROTATED[plan.orientation]).save(tmp, format="JPEG", quality=QUALITY, exif=exif)
    else:
        img.save(tmp, format="JPEG", quality=QUALITY)
    os.replace(tmp, plan.path)


def write(plan: Plan) -> int:
    """Write one image; its size in bytes."""
    plan.path.parent.mkdir(parents=True, exist_ok=True)
    save(render(plan), plan)
    return plan.path.stat().st_size


def init_worker() -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()


def write_all(todo: list[Plan], workers: int) -> None:
    """Write ``todo`` on ``workers`` processes under a progress bar (on stderr)."""
    columns = (TextColumn("writing photos"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("photos", total=len(todo))
        if workers <= 1 or len(todo) <= 1:
            init_worker()
            for plan in todo:
                write(plan)
                progress.advance(task)
            return
        with multiprocessing.Pool(min(workers, len(todo)), initializer=init_worker) as pool:
            for _ in pool.imap_unordered(write, todo, chunksize=1 if len(todo) < 1000 else 4):
                progress.advance(task)


def summary(plans: list[Plan], written: int, seconds: float) -> str:
    """One line: images per format (the EXIF-rotated JPEGs among them), total bytes, size range, seconds."""
    formats = Counter(p.fmt for p in plans)
    rotated = sum(p.orientation != 1 for p in plans)
    total = sum(p.path.stat().st_size for p in plans)
    by_area = sorted((p.size for p in plans), key=lambda s: s[0] * s[1])
    counts = ", ".join(f"{fmt} {formats[fmt]}" + (f" ({rotated} EXIF-rotated)" if fmt == "jpeg" else "")
                       for fmt in SUFFIX if formats[fmt])
    sizes = f"{by_area[0][0]}x{by_area[0][1]} to {by_area[-1][0]}x{by_area[-1][1]}" if by_area else "none"
    return (f"{len(plans)} photos ({written} written, {len(plans) - written} already there): {counts}; "
            f"{total / 1e6:.1f} MB ({total} bytes); sizes {sizes}; {seconds:.1f} s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="Resumable: images that already exist are skipped.")
    ap.add_argument("out", type=Path, help="the folder to write <out>/train/<class>/ and <out>/test/<class>/ into")
    ap.add_argument("--count", type=int, default=None,
                    help=f"how many images in all (default 20000; {SMOKE_COUNT} with --smoke)")
    ap.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                    help="an image folder <source>/train/<class>/*.jpg to take pictures and class names from "
                         "(default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="image i draws everything from seed + i (default 0)")
    ap.add_argument("--test-fraction", type=float, default=0.1,
                    help="the share of each class written under test/ (default 0.1)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="processes writing images (default: the CPU count, %(default)s)")
    ap.add_argument("--smoke", action="store_true",
                    help=f"a tiny set for tests: {SMOKE_COUNT} images of {SMOKE_SIZES[0]} to {SMOKE_SIZES[1]} px, "
                         "at least one of every format and EXIF orientation")
    args = ap.parse_args(argv)
    if args.count is None:
        args.count = SMOKE_COUNT if args.smoke else 20000
    if args.count < 0 or not 0 <= args.test_fraction < 1:
        ap.error("--count must be >= 0 and --test-fraction in [0, 1)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    classes = source_classes(args.source)
    plans = [make_plan(i, args.seed, args.out, classes, args.test_fraction, args.smoke) for i in range(args.count)]
    todo = [p for p in plans if not p.path.exists()]
    write_all(todo, args.workers)
    print(summary(plans, len(todo), time.perf_counter() - start))


if __name__ == "__main__":
    main()
