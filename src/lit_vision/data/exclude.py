"""``data.exclude``: images left out of the data, listed by ``lit-vision audit`` or by hand (docs/audit.md).

The list is one of

* the ``issues.csv`` written by ``lit-vision audit``: a CSV whose header has the columns ``split`` and ``item``
  (other columns are not read); each row leaves its ``item`` out;
* a text file of one entry per line (blank lines skipped; ``#`` starts a comment, at the start of a line or after a
  space);
* a list of entries in the config: ``data.exclude='[photos/train/cat/001.jpg,test/3]'``.

An entry is an image file's path (relative paths are taken from the working directory, as ``data.root`` is) or
``<split>/<index>`` (``train/123``, ``test/7``): the index of a row in that split as its source's loader returned it
(:mod:`lit_vision.data.items`). A path is left out of every split that holds it (compared as normalised absolute
paths); ``<split>/<index>`` of its split only (a CSV row's ``split`` must be a split, its ``item`` says which row).

Nothing is left out silently and nothing is ignored silently: a file that is missing or not in one of these
formats, an entry that names no image of the data, or a split that would lose every image is an error naming the
file (and line) and the fix. :func:`read_exclude` checks the list before any data is read; :func:`apply_exclude`
leaves the rows out of a source's splits before label mapping and the val split; :func:`drop_masks` is the same
matching for anyone holding file lists (``python -m lit_vision.prepare``); :func:`exclude_entries` gives the entries
as lines of a text list (the audit adds them to its own lists).
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lit_vision.data.arrays import ImageArrays, SourceSplits
from lit_vision.data.image_folder import IMAGE_EXTENSIONS
from lit_vision.data.items import SPLITS
from lit_vision.errors import ConfigError, DataNotFoundError

KEY = "data.exclude"
#: which rows of an ``issues.csv`` to read (the row as a mapping of its columns)
RowFilter = Callable[[Mapping[str, str]], bool]
#: how many unmatched entries an error names before it only counts them
NAMED = 5
#: ``<split>/<index>``; a split name that is not one of :data:`SPLITS` is an error, not a path
_SPLIT_INDEX = re.compile(r"^(\w+)/(\d+)$")
#: a comment: ``#`` at the start of a line or after whitespace
_COMMENT = re.compile(r"(^|\s)#.*$")
_FORMATS = ("the issues.csv lit-vision audit wrote (columns split,item,...), a text file of one entry per line, or a "
            "list data.exclude='[photos/cat/1.jpg,test/3]'")
_ENTRY = "an image file's path or <split>/<index> (e.g. test/17; splits: train, val, test)"


@dataclass(frozen=True)
class ExcludeEntry:
    """One entry: ``text`` as written, ``where`` it was written (``line 3``), and what it names: an image file
    (``path``, normalised absolute) or row ``index`` of ``split``."""

    text: str
    where: str
    path: str | None = None
    split: str | None = None
    index: int | None = None

    @property
    def key(self) -> str:
        """What it names, the same for two entries that name the same image."""
        return self.path if self.path is not None else f"{self.split}/{self.index}"


@dataclass(frozen=True)
class ExcludeList:
    """The entries of ``data.exclude``; ``origin`` names it in messages (``data.exclude=audit/issues.csv``)."""

    origin: str
    entries: tuple[ExcludeEntry, ...]

    def __len__(self) -> int:
        return len(self.entries)

    def digest(self) -> str:
        """A fingerprint of what the list names (order and duplicates aside): a preparation records it."""
        return hashlib.sha1("\n".join(sorted({e.key for e in self.entries})).encode()).hexdigest()


def normalise(path: str | os.PathLike[str]) -> str:
    """The form paths are compared in: absolute (from the working directory), ``~`` expanded, normalised."""
    return os.path.normpath(os.path.abspath(os.path.expanduser(os.fspath(path))))


def parse_entry(text: str, where: str, origin: str) -> ExcludeEntry:
    """One entry (a path or ``<split>/<index>``); anything else is a :class:`ConfigError` naming it."""
    match = _SPLIT_INDEX.match(text)
    if match:
        split, index = match.group(1), int(match.group(2))
        if split not in SPLITS:
            raise ConfigError(f"{origin} {where}: {text!r}: {split!r} is not a split (train, val or test); write "
                              "<split>/<index> (e.g. test/17) or an image file's path")
        return ExcludeEntry(text, where, split=split, index=index)
    if Path(text).suffix.lower() not in IMAGE_EXTENSIONS:
        raise ConfigError(f"{origin} {where}: {text!r} is not {_ENTRY} (image files end in "
                          f"{', '.join(sorted(IMAGE_EXTENSIONS))}); fix or remove it")
    return ExcludeEntry(text, where, path=normalise(text))


def _read_csv(path: Path, origin: str, keep: RowFilter | None = None) -> list[ExcludeEntry]:
    entries = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        if "split" not in header or "item" not in header:
            raise ConfigError(f"{origin}: its header {header} lacks the columns 'split' and 'item'; give the "
                              "issues.csv lit-vision audit wrote (regenerate it with lit-vision audit), or a text "
                              f"file of one entry per line ({_ENTRY})")
        reader.fieldnames = header
        for row in reader:
            where = f"line {reader.line_num}"
            if keep is not None and not keep(row):
                continue
            split, item = (row.get("split") or "").strip(), (row.get("item") or "").strip()
            if split not in SPLITS:
                raise ConfigError(f"{origin} {where}: split {split!r} is not a split (train, val or test); fix the "
                                  "line or regenerate the list with lit-vision audit")
            if not item:
                raise ConfigError(f"{origin} {where}: the item is empty; fix the line or regenerate the list with "
                                  "lit-vision audit")
            entries.append(parse_entry(item, where, origin))
    return entries


def _is_csv(path: Path, lines: list[str]) -> bool:
    """``*.csv``, or a first line that is a CSV header with ``split`` and ``item``."""
    if path.suffix.lower() == ".csv":
        return True
    first = next((line for line in lines if line.strip()), "")
    columns = {c.strip() for c in first.split(",")}
    return "split" in columns and "item" in columns


def read_exclude(value: str | os.PathLike[str] | Sequence[str], key: str = KEY,
                 keep: RowFilter | None = None) -> ExcludeList:
    """``data.exclude``: a file (an audit's ``issues.csv`` or a text file of one entry per line) or a list of
    entries, checked (the file exists and every entry is a path or ``<split>/<index>``); nothing is matched against
    data here. ``keep`` reads only the CSV rows it accepts (``evaluate leak_free=``: the test split's leaks); it
    needs an ``issues.csv``."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(value).expanduser()
        origin = f"{key}={value}"
        if not path.is_file():
            raise DataNotFoundError(f"{origin}: {'is a folder, not a file' if path.is_dir() else 'no such file'} "
                                    f"(from {os.getcwd()}); give {_FORMATS}")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{origin} cannot be read as text ({exc}); give {_FORMATS}") from exc
        lines = text.splitlines()
        if _is_csv(path, lines):
            return ExcludeList(origin, tuple(_read_csv(path, origin, keep)))
        if keep is not None:
            raise ConfigError(f"{origin}: give the issues.csv lit-vision audit wrote (its rows say which images are "
                              "what), not a list of files")
        entries = []
        for number, line in enumerate(lines, 1):
            entry = _COMMENT.sub("", line).strip()
            if entry:
                entries.append(parse_entry(entry, f"line {number}", origin))
        return ExcludeList(origin, tuple(entries))
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        entries = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{key}[{i}]={item!r} is not {_ENTRY}; fix or remove it")
            entries.append(parse_entry(item.strip(), f"entry {i}", key))
        return ExcludeList(key, tuple(entries))
    raise ConfigError(f"{key}={value!r}: give {_FORMATS}, or null")


def exclude_entries(value: str | os.PathLike[str] | Sequence[str], key: str = KEY) -> list[str]:
    """``data.exclude``'s entries (:func:`read_exclude`) as lines of a text list that reads back the same from any
    working directory: each path absolute and normalised, each ``<split>/<index>`` as is; in order, once each."""
    return list(dict.fromkeys(e.key for e in read_exclude(value, key).entries))


def drop_masks(excluded: ExcludeList, rows: Mapping[str, tuple[Sequence[str], np.ndarray]],
               key: str = KEY, strict: bool = True) -> dict[str, np.ndarray]:
    """The rows ``excluded`` names, as a boolean mask per split. ``rows`` holds each split's file paths (empty for a
    split read from arrays) and ids (:attr:`ImageArrays.ids`). An entry that names no row, or a split that would
    lose every row, is a :class:`ConfigError`; with ``strict=False`` (``rows`` a mapped subset of the data, e.g. a
    balanced test split) only a list of which no entry names a row is."""
    paths = {e.path for e in excluded.entries if e.path is not None}
    found: set[str] = set()
    masks: dict[str, np.ndarray] = {}
    for split, (sources, ids) in rows.items():
        ids = np.asarray(ids, dtype=np.int64)
        mask = np.zeros(len(ids), dtype=bool)
        if paths and len(sources):
            names = [normalise(s) for s in sources]
            mask |= np.fromiter((n in paths for n in names), dtype=bool, count=len(names))
            found.update(n for n, m in zip(names, mask) if m)
        indices = np.asarray(sorted({e.index for e in excluded.entries if e.split == split and e.index is not None}),
                             dtype=np.int64)
        if len(indices):
            by_index = np.isin(ids, indices)
            mask |= by_index
            found.update(f"{split}/{int(i)}" for i in ids[by_index])
        masks[split] = mask
    missing = [e for e in excluded.entries if e.key not in found]
    if missing and (strict or len(missing) == len(excluded)):
        named = ", ".join(f"{e.text} ({e.where})" for e in missing[:NAMED])
        more = f" and {len(missing) - NAMED} more" if len(missing) > NAMED else ""
        raise ConfigError(f"{excluded.origin}: {len(missing)} of its {len(excluded)} entries are not in the data: "
                          f"{named}{more}; check data.root or regenerate the list with lit-vision audit")
    for split, mask in masks.items():
        if len(mask) and mask.all():
            raise ConfigError(f"{excluded.origin} leaves no image in the {split} split (it lists all {len(mask)}); "
                              f"shorten the list or check data.root ({key} leaves images out, it cannot replace "
                              "a split)")
    return masks


def apply_exclude(splits: SourceSplits, excluded: ExcludeList,
                  key: str = KEY) -> tuple[SourceSplits, dict[str, int]]:
    """``splits`` without the rows ``excluded`` names (:func:`drop_masks`), and how many each split lost."""
    present: dict[str, ImageArrays] = {s: a for s, a in (("train", splits.train), ("val", splits.val),
                                                         ("test", splits.test)) if a is not None}
    masks = drop_masks(excluded, {s: (a.sources, a.ids) for s, a in present.items()}, key)
    out = {s: a.subset(np.flatnonzero(~masks[s])) if masks[s].any() else a for s, a in present.items()}
    return SourceSplits(**out), {s: int(m.sum()) for s, m in masks.items()}


__all__ = ["ExcludeEntry", "ExcludeList", "read_exclude", "exclude_entries", "apply_exclude", "drop_masks",
           "normalise", "KEY"]
