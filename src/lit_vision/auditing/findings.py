"""What an audit finds: one :class:`Finding` per flagged image, written as ``issues.csv``.

``issues.csv`` is also what ``data.exclude`` reads (:mod:`lit_vision.data.exclude`): each row leaves its ``item`` out
of its ``split``. A duplicate's row names the copy to drop (the test/val image of a cross-split pair, the later one
of a pair inside a split) and its ``partner``, the copy that stays.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

EXACT, NEAR, LABEL, OUTLIER = "exact_duplicate", "near_duplicate", "label_issue", "outlier"
#: every kind, in the order reports list them; the quality kinds come from :mod:`lit_vision.auditing.quality`
QUALITY_KINDS = ("blank", "dark", "bright", "blurry", "grayscale", "tiny", "aspect")
KINDS = (EXACT, NEAR, LABEL, OUTLIER, *QUALITY_KINDS)
DUPLICATE_KINDS = (EXACT, NEAR)
#: the order splits are compared in: the copy in the later split is the one a duplicate row names
SPLIT_ORDER = ("train", "val", "test")


@dataclass(frozen=True)
class Finding:
    """One flagged image. ``score``'s meaning depends on the kind (``detail`` says it in words): a duplicate's
    distance relative to the data's median, a label issue's self-confidence, an outlier's neighbour distance
    relative to the median, a quality measure."""

    split: str
    item: str
    kind: str
    score: float
    partner_split: str = ""
    partner: str = ""
    given: str = ""
    suggested: str = ""
    confidence: float | None = None
    detail: str = ""
    index: int = -1  # the row in the audited split (for pictures; not written)
    partner_index: int = -1

    def row(self) -> dict[str, object]:
        row = {k: v for k, v in asdict(self).items() if k not in ("index", "partner_index")}
        row["score"] = f"{self.score:.6g}"
        row["confidence"] = "" if self.confidence is None else f"{self.confidence:.4f}"
        return row


COLUMNS = [f.name for f in fields(Finding) if f.name not in ("index", "partner_index")]


def write_issues(path: Path, findings: Iterable[Finding]) -> Path:
    """``issues.csv``: kinds in :data:`KINDS` order, splits in :data:`SPLIT_ORDER`, strongest first within a kind."""
    rows = sorted(findings, key=sort_key)
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(r.row() for r in rows)
    tmp.replace(path)  # never a half-written list for data.exclude to read
    return path


def sort_key(finding: Finding) -> tuple[int, int, float]:
    """Kind, split, then the strongest finding first: a duplicate's or label issue's lowest score, an outlier's
    highest."""
    strongest_first = -finding.score if finding.kind == OUTLIER else finding.score
    return KINDS.index(finding.kind), SPLIT_ORDER.index(finding.split), strongest_first


def counts(findings: Sequence[Finding], splits: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{kind: {split: images}}`` for every kind (zeros included)."""
    seen = Counter((f.kind, f.split) for f in findings)
    return {kind: {split: seen[(kind, split)] for split in splits} for kind in KINDS}


def leaks(findings: Iterable[Finding], split: str = "test") -> list[Finding]:
    """The findings of ``split``'s images with an exact or near duplicate in the training split: what a leak-free
    score leaves out (``test_leaks.csv``, for ``leak_free=``)."""
    return [f for f in findings if f.kind in DUPLICATE_KINDS and f.split == split and f.partner_split == "train"]


def leaked(findings: Iterable[Finding], split: str = "test") -> set[str]:
    """The items of :func:`leaks`."""
    return {f.item for f in leaks(findings, split)}
