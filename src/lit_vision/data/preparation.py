"""``prepare``: an image folder of any size → a shard directory (:mod:`lit_vision.data.shards`), in parallel
processes, resumable after a kill, refusing to mix two preparations' settings in one directory."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lit_vision.data import shards
from lit_vision.data.exclude import ExcludeList, drop_masks
from lit_vision.data.image_folder import list_class_folders, list_folders, report_unreadable
from lit_vision.data.split import stratified_split

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrepareSettings:
    """What a shard directory was made with; resuming or reusing it needs the same."""

    short_side: int
    quality: int
    channels: int
    skip_corrupt: bool
    val_fraction: float
    use_source_val: bool
    seed: int


@dataclass
class SplitFiles:
    paths: list[str]
    labels: list[int]


def list_split(dirs: Sequence[Path], class_names: Sequence[str]) -> SplitFiles:
    """The image files of one split's folders (non-image entries warned about, empty class folders refused)."""
    paths, labels = list_folders(dirs, class_names)
    return SplitFiles([str(p) for p in paths], labels.tolist())


def leave_out(splits: dict[str, SplitFiles], excluded: ExcludeList) -> dict[str, SplitFiles]:
    """The files of each split without those ``data.exclude`` lists (:func:`~lit_vision.data.exclude.drop_masks`:
    an entry naming no file of the folders, or a split left empty, is an error); the counts left out are logged."""
    masks = drop_masks(excluded, {split: (files.paths, np.arange(len(files.paths))) for split, files in splits.items()})
    log.info("data.exclude: left out %s", {split: int(mask.sum()) for split, mask in masks.items()})
    return {split: SplitFiles([p for p, drop in zip(files.paths, masks[split]) if not drop],
                              [y for y, drop in zip(files.labels, masks[split]) if not drop])
            for split, files in splits.items()}


def plan_splits(layout: dict[str, list[Path]], settings: PrepareSettings, class_names: Sequence[str] | None = None,
                excluded: ExcludeList | None = None) -> tuple[list[str], dict[str, SplitFiles]]:
    """Class names and each split's files, without those ``excluded`` lists; without a val folder (or with
    ``use_source_val`` false) a seeded, stratified ``val_fraction`` of train becomes val, as the in-memory data
    module holds it out. Train is shuffled (seeded); val and test keep the folder's order."""
    names = list(class_names) if class_names else list_class_folders(layout["train"][0])
    splits = {split: list_split(dirs, names) for split, dirs in layout.items()}
    if excluded is not None:
        splits = leave_out(splits, excluded)
    if "val" not in splits or not settings.use_source_val:
        train = splits["train"]
        train_idx, val_idx = stratified_split(np.asarray(train.labels), settings.val_fraction, settings.seed)
        splits["val"] = SplitFiles([train.paths[i] for i in val_idx], [train.labels[i] for i in val_idx])
        splits["train"] = SplitFiles([train.paths[i] for i in train_idx], [train.labels[i] for i in train_idx])
    # streaming reads chunk by chunk and shuffles within a window, so a class-sorted train split would fill whole
    # batches with one class: it is written in a seeded random order
    order = np.random.default_rng(settings.seed).permutation(len(splits["train"].paths))
    train = splits["train"]
    splits["train"] = SplitFiles([train.paths[i] for i in order], [train.labels[i] for i in order])
    return names, {s: splits[s] for s in shards.SPLITS if s in splits}


def _claim(out: Path, settings: dict[str, Any], command: str) -> dict[str, Any] | None:
    """The existing manifest when ``out`` holds this same preparation; refuse another one's directory."""
    manifest = shards.read_manifest(out)
    if manifest is None:
        if out.exists() and any(out.iterdir()):
            raise shards.ShardsError(f"out={out} exists, is not empty and holds no {shards.MANIFEST}: it is not a "
                                     "shard directory, and prepare does not write into other files. Fix: choose a "
                                     "new out= (or empty that directory)")
        return None
    if manifest.get("version") != shards.SHARDS_VERSION or manifest.get("settings") != settings:
        changes = shards.describe_changes(manifest.get("settings") or {}, settings)
        raise shards.ShardsError(f"out={out} holds a preparation made with other settings ({changes}); it is not "
                                 f"written over. Fix: choose a new out=, delete {out}, or run its own command: "
                                 f"{manifest.get('command')}")
    return manifest


def _run_parts(jobs: list[shards.PartJob], workers: int, advance: Callable[[int], None]) -> None:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            shards.write_part(job)
            advance(len(job.paths))
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
        futures = {pool.submit(shards.write_part, job): job for job in jobs}
        for future in as_completed(futures):
            future.result()
            advance(len(futures[future].paths))


def _progress() -> Progress:
    return Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn())


def write_splits(out: Path, splits: dict[str, SplitFiles], settings: PrepareSettings,
                 workers: int) -> dict[str, list[shards.PartJob]]:
    """Every part of every split not finished yet, written by ``workers`` processes behind one progress bar."""
    plans = {split: shards.plan_parts(out / split, files.paths, files.labels, settings.channels,
                                      settings.short_side, settings.quality) for split, files in splits.items()}
    todo = [job for jobs in plans.values() for job in jobs if not job.is_done()]
    total = sum(len(f.paths) for f in splits.values())
    left = sum(len(job.paths) for job in todo)
    if left < total:
        log.info("resuming: %d of %d images already prepared in %s", total - left, total, out)
    with _progress() as progress:
        task = progress.add_task(f"preparing {out.name}", total=total, completed=total - left, rate="")

        def advance(n: int) -> None:
            progress.advance(task, n)
            elapsed = progress.tasks[task].elapsed or 0.0
            done = progress.tasks[task].completed - (total - left)
            progress.update(task, rate=f"{done / elapsed:,.0f} images/s" if elapsed > 0 else "")

        _run_parts(todo, workers, advance)
    return plans


def prepare_shards(layout: dict[str, list[Path]], out: Path, settings: PrepareSettings, workers: int,
                   command: str, class_names: Sequence[str] | None = None,
                   excluded: ExcludeList | None = None) -> shards.ShardSet:
    """Prepare (or finish preparing) ``out`` from the folders of ``layout``, leaving out the files ``excluded``
    lists (``data.exclude``); returns the finished shard set."""
    # skip_corrupt only decides whether unreadable files fail the run: changing it reuses the parts written
    wanted = {**{k: v for k, v in asdict(settings).items() if k != "skip_corrupt"}, "part_size": shards.PART_SIZE,
              "sources": {split: [str(d.resolve()) for d in dirs] for split, dirs in layout.items()}}
    if excluded is not None:  # another list is another preparation (recorded only when given: older dirs still match)
        wanted["exclude"] = {"entries": len(excluded), "sha1": excluded.digest()}
    manifest = _claim(out, wanted, command)
    if manifest is not None and manifest.get("complete"):
        log.info("%s is already prepared with these settings: nothing to do", out)
        return shards.open_shards(out)
    names, splits = plan_splits(layout, settings, class_names, excluded)
    manifest = {"format": shards.FORMAT, "version": shards.SHARDS_VERSION, "complete": False, "command": command,
                "settings": wanted, "class_names": names}
    shards.atomic_write_json(out / shards.MANIFEST, manifest)
    plans = write_splits(out, splits, settings, workers)
    merged = {split: shards.merge_parts(out / split, jobs) for split, jobs in plans.items()}
    unreadable = [bad for m in merged.values() for bad in m["unreadable"]]
    report_unreadable(unreadable, sum(len(f.paths) for f in splits.values()), settings.skip_corrupt)
    mean, std = shards.mean_std(merged["train"]["pixel_stats"], settings.channels)
    manifest.update(complete=True, mean=mean, std=std, unreadable=unreadable, splits={
        split: {"count": len(m["files"]), "class_counts": shards.class_counts(m["labels"], names)}
        for split, m in merged.items() if m["files"]})
    shards.atomic_write_json(out / shards.MANIFEST, manifest)
    return shards.open_shards(out)


def auto_workers(workers: int | str) -> int:
    """``workers=auto``: one process per CPU this process may use."""
    if workers == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return int(workers)
