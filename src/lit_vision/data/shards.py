"""Streaming shards: an image folder of any size written once as LitData chunks, read back by ``data=shards``.

A shard directory::

    <out>/lit_vision_shards.json     the manifest: settings, class names, counts, pixel mean/std; "complete" at the end
    <out>/<split>/index.json         LitData's index of the split (written when the split is finished)
    <out>/<split>/chunk-<part>-<i>.bin
    <out>/<split>/parts/<part>.json  one finished part: its files, labels, unreadable files, pixel sums
    <out>/<split>/sources.txt        the source file of every sample, in the split's order
    <out>/<split>/labels.npy         the label of every sample, in the split's order

Each sample is ``{"image": JPEG bytes, "label": int, "index": int}``: the photo upright (EXIF applied), its shorter
side reduced to ``short_side`` (aspect ratio kept), re-encoded at ``quality``; ``index`` is its position in the
split's sorted file list, which seeds its augmentation. A split is written in parts of :data:`PART_SIZE` files, each
by one process (its own LitData ``BinaryWriter``, which names its chunks by the part number). A finished part
leaves ``parts/<part>.json``, written last and atomically, so a killed ``prepare`` resumes with the parts it has not
finished. This module is the one reader and writer of the format; :mod:`lit_vision.data.streaming` serves it.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import ImageStat

from lit_vision.data.image_folder import READ_ERRORS, fingerprint, unreadable_reason
from lit_vision.errors import ConfigError, DataNotFoundError, LitVisionError
from lit_vision.imaging import open_upright

MANIFEST = "lit_vision_shards.json"
FORMAT = "lit_vision shards"
#: the version of the layout above; shards of another version are refused (prepare them again)
SHARDS_VERSION = 1
#: files per part: the unit of parallel work and of resuming after a kill
PART_SIZE = 256
#: LitData's chunk size: big enough for sequential reads, small enough that a worker holds few in memory
CHUNK_BYTES = 32 * 1024 * 1024
SPLITS = ("train", "val", "test")
RANK_VARIABLE = "DATA_OPTIMIZER_GLOBAL_RANK"
INDEX = "index.json"
SOURCES_FILE = "sources.txt"
LABELS_FILE = "labels.npy"


class ShardsError(LitVisionError):
    """A shard directory that cannot be used as it is; the message names it and the fix."""


class ShardsCorruptError(ShardsError):
    """A chunk file that is missing, truncated or unreadable; the message names it and the samples lost."""


def atomic_write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# --- writing one part (in a worker process) -----------------------------------------------------------------------
@dataclass(frozen=True)
class PartJob:
    """One part of a split: ``paths[i]`` has ``labels[i]`` and is file ``indices[i]`` of the split."""

    split_dir: str
    part: int
    paths: tuple[str, ...]
    labels: tuple[int, ...]
    indices: tuple[int, ...]
    channels: int
    short_side: int
    quality: int

    @property
    def record(self) -> Path:
        return Path(self.split_dir) / "parts" / f"{self.part}.json"

    def fingerprint(self) -> str:
        """Names, sizes and modification times of the part's files: a part whose files changed is written again."""
        return fingerprint([Path(p) for p in self.paths])

    def is_done(self) -> bool:
        """Finished earlier with the same files (a record that a kill cut short does not parse: not done)."""
        try:
            return json.loads(self.record.read_text())["fingerprint"] == self.fingerprint()
        except (OSError, ValueError, KeyError):
            return False


class _Discard:
    """LitData's writer prints its inferred format unless given a queue: this one drops the message."""

    def put_nowait(self, message: str) -> None:
        del message


def _remove_leftovers(job: PartJob) -> None:
    """Chunks and index of an unfinished earlier attempt at this part."""
    folder = Path(job.split_dir)
    for stale in [*folder.glob(f"chunk-{job.part}-*.bin"), folder / f"{job.part}.{INDEX}", job.record]:
        stale.unlink(missing_ok=True)


def encode_photo(path: str, channels: int, short_side: int, quality: int) -> tuple[bytes, np.ndarray]:
    """The photo as stored in a shard (JPEG bytes) and its per-channel pixel sums (sum, sum of squares, count)."""
    img = open_upright(Path(path), channels, short_side)
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality)
    stat = ImageStat.Stat(img)  # per-band sums in C: a quarter of the time numpy took
    return buffer.getvalue(), np.asarray([*stat.sum, *stat.sum2, img.width * img.height], dtype=np.float64)


def write_part(job: PartJob) -> dict[str, Any]:
    """Decode, resize and re-encode the part's photos into LitData chunks; returns (and records) what it wrote."""
    from litdata.streaming.writer import BinaryWriter

    _remove_leftovers(job)
    with _writer_rank(job.part):
        writer = BinaryWriter(job.split_dir, chunk_bytes=CHUNK_BYTES, msg_queue=_Discard())
        record = _write_items(writer, job)
    atomic_write_json(job.record, record)
    return record


@contextmanager
def _writer_rank(rank: int) -> Iterator[None]:
    """LitData's writer names its chunks and index by the optimizer rank in ``DATA_OPTIMIZER_GLOBAL_RANK``: set
    it to the part number while writing, and restore it (a reader in this process must not see it)."""
    previous = os.environ.get(RANK_VARIABLE)
    os.environ[RANK_VARIABLE] = str(rank)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(RANK_VARIABLE, None)
        else:
            os.environ[RANK_VARIABLE] = previous


def _write_items(writer: Any, job: PartJob) -> dict[str, Any]:
    stats = np.zeros(2 * job.channels + 1)
    good: list[int] = []
    bad: list[tuple[str, str]] = []
    for i, path in enumerate(job.paths):
        try:
            data, pixel_stats = encode_photo(path, job.channels, job.short_side, job.quality)
        except READ_ERRORS as exc:
            bad.append((path, unreadable_reason(exc)))
            continue
        writer[len(good)] = {"image": data, "label": job.labels[i], "index": job.indices[i]}
        good.append(i)
        stats += pixel_stats
    if good:
        writer.done()
    return {"fingerprint": job.fingerprint(), "files": [job.paths[i] for i in good],
            "labels": [job.labels[i] for i in good], "unreadable": bad, "pixel_stats": stats.tolist()}


def plan_parts(split_dir: Path, paths: Sequence[str], labels: Sequence[int], channels: int, short_side: int,
               quality: int) -> list[PartJob]:
    return [PartJob(str(split_dir), n, tuple(paths[i:i + PART_SIZE]), tuple(int(v) for v in labels[i:i + PART_SIZE]),
                    tuple(range(i, min(i + PART_SIZE, len(paths)))), channels, short_side, quality)
            for n, i in enumerate(range(0, len(paths), PART_SIZE))]


# --- finishing a split ----------------------------------------------------------------------------------------------
def merge_parts(split_dir: Path, jobs: Sequence[PartJob]) -> dict[str, Any]:
    """Join the finished parts, in order, into the split's ``index.json`` and ``sources.txt``; returns the split's
    files, labels, unreadable files and pixel sums."""
    chunks: list[dict[str, Any]] = []
    config: dict[str, Any] | None = None
    files: list[str] = []
    labels: list[int] = []
    unreadable: list[tuple[str, str]] = []
    stats: np.ndarray | None = None
    for job in jobs:
        record = json.loads(job.record.read_text())
        files += record["files"]
        labels += record["labels"]
        unreadable += [tuple(b) for b in record["unreadable"]]
        stats = np.asarray(record["pixel_stats"]) + (0 if stats is None else stats)
        if record["files"]:
            part_index = json.loads((split_dir / f"{job.part}.{INDEX}").read_text())
            config = config or part_index["config"]
            chunks += part_index["chunks"]
    if config is not None:
        (split_dir / SOURCES_FILE).write_text("".join(f"{f}\n" for f in files))
        np.save(split_dir / LABELS_FILE, np.asarray(labels, dtype=np.int64))
        atomic_write_json(split_dir / INDEX, {"chunks": chunks, "config": config})
    return {"files": files, "labels": labels, "unreadable": unreadable, "pixel_stats": stats}


def mean_std(stats: np.ndarray, channels: int) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units from (sum, sum of squares, pixel count)."""
    count = max(float(stats[-1]), 1.0)
    mean = stats[:channels] / count
    var = np.maximum(stats[channels:2 * channels] / count - mean ** 2, 0.0)
    return (mean / 255.0).tolist(), np.maximum(np.sqrt(var) / 255.0, 1e-3).tolist()


# --- the manifest: the one reader ------------------------------------------------------------------------------
@dataclass
class ShardSet:
    """A complete shard directory, checked: :func:`open_shards` returns one."""

    root: Path
    manifest: dict[str, Any]
    _sources: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def unchecked(cls, root: str | Path) -> ShardSet:
        """The shard set of a directory :func:`open_shards` accepted earlier (a worker naming a bad chunk)."""
        path = Path(root)
        return cls(path, read_manifest(path) or {})

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def channels(self) -> int:
        return int(self.manifest["settings"]["channels"])

    @property
    def splits(self) -> list[str]:
        return [s for s in SPLITS if s in self.manifest["splits"]]

    def split_dir(self, split: str) -> Path:
        return self.root / split

    def count(self, split: str) -> int:
        return int(self.manifest["splits"][split]["count"])

    def class_counts(self, split: str) -> dict[str, int]:
        return dict(self.manifest["splits"][split]["class_counts"])

    def sources(self, split: str) -> list[str]:
        """The source file of every sample of ``split``, in the split's order."""
        if split not in self._sources:
            self._sources[split] = (self.split_dir(split) / SOURCES_FILE).read_text().splitlines()
        return self._sources[split]

    def labels(self, split: str) -> np.ndarray:
        """The label of every sample of ``split``, in the split's order."""
        return np.load(self.split_dir(split) / LABELS_FILE)

    def chunk_of(self, split: str, chunk_index: int) -> tuple[str, int, int]:
        """The file of chunk ``chunk_index`` of ``split`` and the positions [first, last) of its samples."""
        chunks = json.loads((self.split_dir(split) / INDEX).read_text())["chunks"]
        first = sum(int(c["chunk_size"]) for c in chunks[:chunk_index])
        return chunks[chunk_index]["filename"], first, first + int(chunks[chunk_index]["chunk_size"])

    def check_chunks(self, split: str) -> None:
        """Every chunk of ``split`` present with the size its index records; else name the chunk and its samples."""
        folder = self.split_dir(split)
        first = 0
        for chunk in json.loads((folder / INDEX).read_text())["chunks"]:
            path = folder / chunk["filename"]
            size = path.stat().st_size if path.exists() else None
            if size != int(chunk["chunk_bytes"]):
                found = "missing" if size is None else f"{size:,} bytes instead of {int(chunk['chunk_bytes']):,}"
                raise ShardsCorruptError(self.lost_samples(split, chunk["filename"], first,
                                                           first + int(chunk["chunk_size"]), found))
            first += int(chunk["chunk_size"])

    def lost_samples(self, split: str, filename: str, first: int, last: int, problem: str) -> str:
        """The message for a bad chunk: the chunk, the samples it holds (their source files) and the fix."""
        sources = self.sources(split)[first:last]
        named = ", ".join(sources[:5]) + (f", … ({len(sources) - 5} more)" if len(sources) > 5 else "")
        return (f"shard chunk {self.split_dir(split) / filename} is corrupt ({problem}): samples {first}-{last - 1} "
                f"of the {split} split ({last - first} images: {named}) cannot be read. Fix: prepare the shards "
                f"again ({self.manifest['command']}), into a new out= or after deleting {self.root}")


def read_manifest(root: Path) -> dict[str, Any] | None:
    path = root / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ShardsError(f"{path} is not valid JSON ({exc}): the shard directory is damaged; prepare it again "
                          f"into a new out= (python -m lit_vision.prepare ...)") from exc


def _looks_like_image_folder(root: Path) -> bool:
    return (root / "train").is_dir() and not (root / "train" / INDEX).exists()


def open_shards(root: str | Path | None) -> ShardSet:
    """The shard directory ``data.root`` names, refused with one line naming it and the fix when it is missing,
    partial (a ``prepare`` that was stopped), of another version, an image folder, or has a damaged chunk."""
    if root is None:
        raise ConfigError("data=shards needs data.root=<shard dir>, a directory written by "
                          "python -m lit_vision.prepare data=image_folder data.root=<photos> out=<shard dir>")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"data.root={path}: no such shard directory. Fix: point data.root at the out= of a "
                                "finished python -m lit_vision.prepare run, or run prepare with out=" + str(path))
    manifest = read_manifest(path)
    if manifest is None:
        hint = (f"it looks like an image folder: prepare it first with python -m lit_vision.prepare "
                f"data=image_folder data.root={path} out=<shard dir>, then train with data.root=<shard dir>"
                if _looks_like_image_folder(path) else
                "point data.root at the out= directory of python -m lit_vision.prepare")
        raise DataNotFoundError(f"data.root={path} holds no {MANIFEST}, so it is not a shard directory; {hint}")
    if manifest.get("format") != FORMAT or manifest.get("version") != SHARDS_VERSION:
        raise ShardsError(f"{path / MANIFEST} was written by another version of lit_vision (format "
                          f"{manifest.get('format')!r} version {manifest.get('version')!r}; this one reads version "
                          f"{SHARDS_VERSION}). Fix: prepare the shards again with this version into a new out=")
    if not manifest.get("complete"):
        raise ShardsError(f"data.root={path} is a partial preparation (its prepare was stopped or failed before the "
                          f"end). Fix: run the same command again to finish it: {manifest.get('command')}")
    shards = ShardSet(path, manifest)
    for split in shards.splits:
        if not (shards.split_dir(split) / INDEX).exists():
            raise ShardsError(f"{shards.split_dir(split)} has no {INDEX} although {MANIFEST} lists it: the shard "
                              f"directory is damaged. Fix: prepare it again ({manifest.get('command')})")
        shards.check_chunks(split)
    return shards


def describe_changes(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {old.get(k)!r} there vs {new.get(k)!r} now" for k in keys)


def class_counts(labels: Iterable[int], class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(np.asarray(list(labels), dtype=np.int64), minlength=len(class_names))
    return {name: int(c) for name, c in zip(class_names, counts)}
