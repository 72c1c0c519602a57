"""Training-loader images/s on this CPU: streaming shards (``data=shards``) against torchvision's ImageFolder, the
single-thread decode limits they are bounded by, and ``prepare``'s rate.

    python benchmarks/loader.py --folder /tmp/photos --shards /tmp/shards --workers 2 --json loader.json

Why: a GPU trains a ResNet-50-sized net on thousands of 224 px images a second; the DataLoader worker processes
that decode the JPEGs and take the RandomResizedCrop must keep up, or the GPU starves. For context, FFCV reports
about 330 images/s per vCPU for RandomResizedCrop 224 from JPEG, and a single-thread JPEG decode of ImageNet-size
images (about 500x375) runs at 540-860 images/s per core; photos of a megapixel or more decode several times
slower, which is what prepare's shards (every photo re-encoded with its shorter side at 256) avoid. One run
measures, in images/s:

1. the single-thread limits, in this process with ``torch.set_num_threads(1)``: ``PhotoTransform.train`` (the
   worker's ``decode_jpeg`` + seeded RandomResizedCrop) over stored shard samples (their bytes read from the shards
   first, untimed); and the folder's original photos through torchvision ImageFolder's per-image path (PIL open,
   ``convert("RGB")``, RandomResizedCrop, flip, PILToTensor), and with PIL's JPEG draft mode (the decoder skips
   the resolution the crop would throw away; HEIC/PNG decode in full);
2. the shards loader: ``ShardsDataModule`` as ``conf/data/shards.yaml`` builds it, ``train_dataloader()``
   iterated for ``--images`` images after 4 warm-up batches per worker (these cover worker start-up and the first
   use of each worker's batch slots, once an epoch; the time to the first batch is reported too);
3. the baseline: ``torchvision.datasets.ImageFolder(<folder>/train)`` (HEIC readable through pillow-heif) with
   RandomResizedCrop, flip and PILToTensor (uint8, as ours) in a shuffled ``DataLoader``, the same warm-up and
   image count;
4. prepare: ``prepare_shards`` from the folder (or its first ``--prepare-images``) into a fresh temporary directory
   with ``--workers`` processes, short side 256, quality 90, per second and per worker process.

Then the targets and whether each is met: streaming >= 0.8 x workers x the single-thread shard limit, streaming >=
1.5 x the ImageFolder baseline, prepare >= 100 images/s per worker process (one per core). Prints the CPU, the
library versions, the command line and the folder's image count and size range; ``--json`` writes the same rows.
Without ``--shards`` the loaders read the shards that step 4 wrote. ``--smoke`` (tests) makes a tiny photo folder
(2 classes x 12 JPEGs) unless ``--folder`` is given and measures 16 images in batches of 4, in seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import litdata
import numpy as np
import torch
import torchvision
import torchvision.transforms as T
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader
from torchvision.transforms import functional as TF

from lit_vision.config import CONF_DIR
from lit_vision.data.image_folder import is_image_file, list_class_folders, list_files, split_dirs
from lit_vision.data.preparation import PrepareSettings, prepare_shards
from lit_vision.data.streaming import PhotoTransform, ShardsDataModule
from lit_vision.imaging import register_heif
from lit_vision.reproduction.machine import cores, cpu_model

register_heif()  # ImageFolder opens with PIL itself: HEIC photos need pillow-heif's opener, here and in workers

#: warm-up batches per worker process: start-up, and the first use of its batch slots (data/batch_slots.py)
WARMUP_PER_WORKER = 4
SHORT_SIDE, QUALITY = 256, 90
SMOKE_CLASSES, SMOKE_PER_CLASS, SMOKE_IMAGES, SMOKE_BATCH = 2, 12, 16, 4
SIZE_SAMPLE = 50
#: the targets: streaming vs its workers' single-thread limit and vs ImageFolder; prepare per worker process
STREAM_EFFICIENCY, STREAM_OVER_IMAGEFOLDER, PREPARE_PER_CORE = 0.8, 1.5, 100.0


@dataclass
class Result:
    """One measurement: ``images`` processed in ``seconds`` by ``workers`` threads or processes."""

    key: str
    name: str
    workers: int
    images: int
    seconds: float
    first_batch_s: float | None = None
    note: str = ""

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": self.images_per_s,
                "images_per_s_per_worker": self.images_per_s / self.workers}


# --- the photo folder ------------------------------------------------------------------------------------------------
def make_smoke_folder(root: Path, seed: int) -> Path:
    """``root/train/<class>/*.jpg``: 2 classes x 12 noisy gradient JPEGs of about 200x150 (some portrait)."""
    rng = np.random.default_rng(seed)
    for c in range(SMOKE_CLASSES):
        folder = root / "train" / f"class{c}"
        folder.mkdir(parents=True)
        for k in range(SMOKE_PER_CLASS):
            w, h = (200 + 4 * k, 150 + 3 * k) if k % 3 else (150 + 3 * k, 200 + 4 * k)
            ramp = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.5 + 0.5 * c, 1.0 - c * 0.5])
            pixels = ramp + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{k:03d}.jpg", quality=90)
    return root


def folder_files(layout: dict[str, list[Path]]) -> dict[str, list[Path]]:
    """Each split's image files (the extensions lit_vision and prepare read), sorted by class then name."""
    names = list_class_folders(layout["train"][0])
    return {split: [p for d in dirs for p in list_files(d, names)[0]] for split, dirs in layout.items()}


def describe_folder(files: dict[str, list[Path]], seed: int) -> dict[str, Any]:
    """Image counts and the (width, height) range of a seeded sample of files, read from their headers."""
    everything = [p for paths in files.values() for p in paths]
    sample = random.Random(seed).sample(everything, min(SIZE_SAMPLE, len(everything)))
    sizes = []
    for path in sample:
        with Image.open(path) as img:
            sizes.append(img.size)
    by_area = sorted(sizes, key=lambda s: s[0] * s[1])
    median = by_area[len(by_area) // 2]
    return {"images": len(everything), "per_split": {s: len(p) for s, p in files.items()},
            "sampled": len(sizes), "smallest": list(by_area[0]), "median": list(median), "largest": list(by_area[-1])}


def subset_layout(files: dict[str, list[Path]], count: int, dest: Path) -> dict[str, list[Path]]:
    """The first ``count`` images (the same share of every split and class, at least one each) symlinked into
    ``dest/<split>/<class>/``, so prepare sees the folder's layout."""
    total = sum(len(p) for p in files.values())
    for split, paths in files.items():
        by_class: dict[str, list[Path]] = {}
        for path in paths:
            by_class.setdefault(path.parent.name, []).append(path)
        for name, members in by_class.items():
            (dest / split / name).mkdir(parents=True, exist_ok=True)
            for path in members[:max(1, round(len(members) * count / total))]:
                (dest / split / name / path.name).symlink_to(path.resolve())
    return split_dirs(dest)


# --- 1. single-thread limits -----------------------------------------------------------------------------------------
@contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_each(fn: Callable[[Any], Any], items: Sequence[Any], count: int) -> float:
    """Seconds to call ``fn`` on ``count`` items (cycling through ``items``), on one thread."""
    with one_thread():
        fn(items[0])  # first-call set-up (libjpeg, allocator) is not the steady rate
        start = time.perf_counter()
        for i in range(count):
            fn(items[i % len(items)])
        return time.perf_counter() - start


def shard_samples(shards: Path, count: int) -> list[dict[str, Any]]:
    """Up to ``count`` training samples (JPEG bytes, label, index) read from the shards."""
    stream = litdata.StreamingDataset(str(shards / "train"))
    return [stream[i] for i in range(min(count, len(stream)))]


def single_thread_shards(transform: PhotoTransform, shards: Path, count: int) -> Result:
    samples = shard_samples(shards, count)
    seconds = time_each(lambda item: transform.train(item, 0), samples, count)
    return Result("single_thread_shards", "single thread, shards (decode_jpeg + crop)", 1, count,
                  seconds, note=f"{len(samples)} distinct samples")


def imagefolder_transform(size: Sequence[int]) -> T.Compose:
    return T.Compose([T.RandomResizedCrop(list(size)), T.RandomHorizontalFlip(), T.PILToTensor()])


def imagefolder_image(path: Path, transform: T.Compose) -> torch.Tensor:
    """torchvision's ``pil_loader`` then the transform: what an ImageFolder worker does per photo."""
    with open(path, "rb") as f:
        img = Image.open(f).convert("RGB")
    return transform(img)


def draft_image(path: Path, size: Sequence[int], crop: T.RandomResizedCrop) -> torch.Tensor:
    """RandomResizedCrop's box drawn on the full-size photo, the JPEG decoded at the smallest draft scale (1/2, 1/4,
    1/8) that still covers the box with ``size`` pixels, then the crop of the box, flip and PILToTensor."""
    with Image.open(path) as img:
        width, height = img.size
        top, left, h, w = crop.get_params(img, list(crop.scale), list(crop.ratio))
        if img.format == "JPEG":
            scale = min(1.0, max(size[0] / h, size[1] / w))
            img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        rgb = img.convert("RGB")
    fx, fy = rgb.width / width, rgb.height / height
    out = TF.resized_crop(rgb, round(top * fy), round(left * fx), max(1, round(h * fy)), max(1, round(w * fx)),
                          list(size), antialias=True)
    return TF.pil_to_tensor(TF.hflip(out) if random.random() < 0.5 else out)


def single_thread_photos(paths: list[Path], size: Sequence[int], count: int, seed: int) -> list[Result]:
    """The original photos (a seeded sample, page cache warmed untimed) through ImageFolder's path and draft mode."""
    sample = random.Random(seed).sample(paths, min(count, len(paths)))
    for path in sample:
        path.read_bytes()
    transform, crop = imagefolder_transform(size), T.RandomResizedCrop(list(size))
    note = f"{len(sample)} distinct photos"
    return [Result("single_thread_photos", "single thread, photos (ImageFolder path)", 1,
                   count, time_each(lambda p: imagefolder_image(p, transform), sample, count), note=note),
            Result("single_thread_photos_draft", "single thread, photos (PIL draft + crop)", 1, count,
                   time_each(lambda p: draft_image(p, size, crop), sample, count), note=note + ", JPEG draft")]


# --- 2. and 3. the loaders -------------------------------------------------------------------------------------------
def endless(loader: Iterable[Any], epochs: list[int]) -> Iterator[Any]:
    """The loader's batches epoch after epoch; ``epochs[0]`` counts the epochs started."""
    while True:
        epochs[0] += 1
        yield from loader


def warmup_batches(workers: int) -> int:
    return WARMUP_PER_WORKER * max(1, workers)


def time_loader(make_loader: Callable[[], Iterable[Any]], images: int, warmup: int) -> tuple[float, int, float, int]:
    """(seconds to the first batch, images and seconds after ``warmup`` batches, epochs started) of a loader."""
    epochs = [0]
    start = time.perf_counter()
    batches = endless(make_loader(), epochs)
    try:
        next(batches)
        first = time.perf_counter() - start
        for _ in range(warmup - 1):
            next(batches)
        start, seen = time.perf_counter(), 0
        while seen < images:
            seen += len(next(batches)[1])
        return first, seen, time.perf_counter() - start, epochs[0]
    finally:
        batches.close()  # shuts the worker processes down


def shards_datamodule(shards: Path, workers: int, size: int, batch: int, seed: int) -> ShardsDataModule:
    """``conf/data/shards.yaml`` with root, num_workers, image_size and batch_size set, instantiated and set up."""
    config = OmegaConf.create({"seed": seed, "data": OmegaConf.load(CONF_DIR / "data" / "shards.yaml")})
    data = OmegaConf.to_container(config, resolve=True)["data"]  # type: ignore[index]
    data.update(root=str(shards), num_workers=workers, image_size=[size, size], batch_size=batch)
    dm = instantiate(data, _convert_="all")
    dm.setup()
    return dm


def epochs_note(epochs: int) -> str:
    return f"{epochs} epochs (worker restarts timed)" if epochs > 1 else ""


def shards_loader(dm: ShardsDataModule, workers: int, images: int) -> Result:
    first, seen, seconds, epochs = time_loader(dm.train_dataloader, images, warmup_batches(workers))
    return Result("shards_loader", "shards loader (ShardsDataModule)", workers, seen,
                  seconds, first, epochs_note(epochs))


def image_file(path: str) -> bool:
    """ImageFolder's file filter: lit_vision's image extensions (torchvision's own list has no HEIC/AVIF)."""
    return is_image_file(Path(path))


def imagefolder_loader(train_dir: Path, size: int, batch: int, workers: int, images: int) -> Result:
    dataset = torchvision.datasets.ImageFolder(str(train_dir), transform=imagefolder_transform([size, size]),
                                               is_valid_file=image_file)
    first, seen, seconds, epochs = time_loader(
        lambda: DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers), images,
        warmup_batches(workers))
    return Result("imagefolder_loader", "baseline: ImageFolder + DataLoader", workers, seen, seconds, first,
                  epochs_note(epochs))


# --- 4. prepare ------------------------------------------------------------------------------------------------------
def prepare(layout: dict[str, list[Path]], out: Path, workers: int, seed: int) -> Result:
    """``prepare_shards`` as ``python -m lit_vision.prepare`` runs it (data defaults), into the empty ``out``."""
    settings = PrepareSettings(short_side=SHORT_SIDE, quality=QUALITY, channels=3, skip_corrupt=False,
                               val_fraction=0.1, use_source_val=True, seed=seed)
    start = time.perf_counter()
    shards = prepare_shards(layout, out, settings, workers, "benchmarks/loader.py")
    seconds = time.perf_counter() - start
    count = sum(shards.count(s) for s in shards.splits) + len(shards.manifest["unreadable"])
    return Result("prepare", "prepare (photos → shards)", workers, count,
                  seconds, note=f"short side {SHORT_SIDE}, quality {QUALITY}")


# --- the report ------------------------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    flags = ""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        pass
    return {"cpu": cpu_model(), "avx512_bf16": "avx512_bf16" in flags.split(), "cores": cores(),
            "torch": torch.__version__, "torchvision": torchvision.__version__, "litdata": version("litdata"),
            "pillow": Image.__version__}


def targets(results: dict[str, Result], workers: int) -> list[dict[str, Any]]:
    limit = results["single_thread_shards"].images_per_s
    stream = results["shards_loader"].images_per_s
    baseline = results["imagefolder_loader"].images_per_s
    per_core = results["prepare"].images_per_s / min(results["prepare"].workers, cores())
    rows = [(f"streaming >= {STREAM_EFFICIENCY} x ({workers} workers x single-thread shard limit {limit:,.0f})",
             stream, STREAM_EFFICIENCY * workers * limit),
            (f"streaming >= {STREAM_OVER_IMAGEFOLDER} x ImageFolder baseline ({baseline:,.0f})", stream,
             STREAM_OVER_IMAGEFOLDER * baseline),
            (f"prepare >= {PREPARE_PER_CORE:.0f} images/s per core (its worker processes, at most one per core)",
             per_core, PREPARE_PER_CORE)]
    return [{"target": text, "value": value, "threshold": threshold, "met": value >= threshold}
            for text, value, threshold in rows]


def print_report(report: dict[str, Any]) -> None:
    console = Console(width=160)
    m, folder, s = report["machine"], report["folder"], report["settings"]
    console.print(f"command: {report['command']}")
    console.print(f"CPU: {m['cpu']} ({m['cores']} cores, avx512_bf16 {'yes' if m['avx512_bf16'] else 'no'}); torch "
                  f"{m['torch']}, torchvision {m['torchvision']}, litdata {m['litdata']}, Pillow {m['pillow']}")
    console.print(f"folder: {report['folder_path']}: {folder['images']} images {folder['per_split']}; sizes of "
                  f"{folder['sampled']} sampled: {'x'.join(map(str, folder['smallest']))} to "
                  f"{'x'.join(map(str, folder['largest']))} (median {'x'.join(map(str, folder['median']))})")
    console.print(f"shards: {report['shards_path']}" + ("" if s["shards_given"] else " (made by prepare, removed)"))
    table = Table(title=f"loader images/s — {s['image_size']} px crops, batch {s['batch_size']}, workers "
                        f"{s['workers']}, {s['images']} images after {s['warmup_batches']} warm-up batches")
    for col in ("measurement", "workers", "images", "seconds", "images/s", "per worker", "first batch s", "note"):
        table.add_column(col, justify="left" if col in ("measurement", "note") else "right")
    for r in report["rows"]:
        first = f"{r['first_batch_s']:.2f}" if r["first_batch_s"] is not None else "–"
        table.add_row(r["name"], str(r["workers"]), str(r["images"]), f"{r['seconds']:.2f}",
                      f"{r['images_per_s']:,.0f}", f"{r['images_per_s_per_worker']:,.0f}", first, r["note"])
    console.print(table)
    for t in report["targets"]:
        console.print(f"target: {t['target']}: {t['value']:,.0f} vs {t['threshold']:,.0f} images/s — "
                      f"{'met' if t['met'] else 'NOT met'}")


# --- the command -----------------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, default=None,
                    help="the photo folder: <folder>/train/<class>/*, optional val/ and test/ (--smoke: made)")
    ap.add_argument("--shards", type=Path, default=None,
                    help="the shard directory prepared from --folder (default: the shards measurement 4 writes)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader and prepare worker processes (default 2)")
    ap.add_argument("--image-size", type=int, default=224, help="the square crop's side (default 224)")
    ap.add_argument("--batch-size", type=int, default=None, help=f"default 64 ({SMOKE_BATCH} with --smoke)")
    ap.add_argument("--images", type=int, default=None,
                    help=f"images timed per measurement (default 2000; {SMOKE_IMAGES} with --smoke)")
    ap.add_argument("--prepare-images", type=int, default=None,
                    help="prepare only about this many photos of the folder (same share per split and class)")
    ap.add_argument("--seed", type=int, default=42, help="the data seed (crops, samples; default 42)")
    ap.add_argument("--work", type=Path, default=None, help="where the temporary directories go (default: $TMPDIR)")
    ap.add_argument("--json", type=Path, default=None, help="write the report (rows and targets) here")
    ap.add_argument("--smoke", action="store_true",
                    help=f"a tiny run for tests: its own {SMOKE_CLASSES} x {SMOKE_PER_CLASS} JPEG folder unless "
                         f"--folder is given, {SMOKE_IMAGES} images, batch {SMOKE_BATCH}")
    args = ap.parse_args(argv)
    args.images = args.images or (SMOKE_IMAGES if args.smoke else 2000)
    args.batch_size = args.batch_size or (SMOKE_BATCH if args.smoke else 64)
    if args.smoke and args.folder is not None and args.prepare_images is None:
        args.prepare_images = SMOKE_CLASSES * SMOKE_PER_CLASS
    if args.folder is None and not args.smoke:
        ap.error("--folder is required (or --smoke)")
    if min(args.workers, args.image_size, args.batch_size, args.images, args.prepare_images or 1) < 1:
        ap.error("--workers, --image-size, --batch-size, --images and --prepare-images must be >= 1")
    return args


def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    folder = (args.folder or make_smoke_folder(tmp / "photos", args.seed)).expanduser().resolve()
    layout = split_dirs(folder)
    files = folder_files(layout)
    total = sum(len(p) for p in files.values())
    if args.prepare_images is not None and args.prepare_images < total:
        layout = subset_layout(files, args.prepare_images, tmp / "subset")
    results = {"prepare": prepare(layout, tmp / "shards", args.workers, args.seed)}
    shards = (args.shards.expanduser().resolve() if args.shards else tmp / "shards")
    dm = shards_datamodule(shards, args.workers, args.image_size, args.batch_size, args.seed)
    assert dm.transform is not None
    results["single_thread_shards"] = single_thread_shards(dm.transform, shards, args.images)
    for r in single_thread_photos(files["train"], [args.image_size] * 2, args.images, args.seed):
        results[r.key] = r
    results["shards_loader"] = shards_loader(dm, args.workers, args.images)
    results["imagefolder_loader"] = imagefolder_loader(folder / "train", args.image_size, args.batch_size,
                                                       args.workers, args.images)
    order = ("single_thread_shards", "single_thread_photos", "single_thread_photos_draft", "shards_loader",
             "imagefolder_loader", "prepare")
    return {"command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]), "machine": machine(),
            "folder_path": str(folder), "folder": describe_folder(files, args.seed), "shards_path": str(shards),
            "settings": {"workers": args.workers, "image_size": args.image_size, "batch_size": args.batch_size,
                         "warmup_batches": warmup_batches(args.workers),
                         "images": args.images, "prepare_images": args.prepare_images, "seed": args.seed,
                         "smoke": args.smoke, "shards_given": args.shards is not None},
            "rows": [results[k].row() for k in order], "targets": targets(results, args.workers)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loader-bench-", dir=args.work) as tmp:
        report = measure(args, Path(tmp))
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
