"""The audit's pictures: people check findings by looking at them.

* ``duplicates.png``: each pair side by side, the copy to drop on the left, titled with both splits and the score;
* ``label_issues.png``: suspected label errors titled ``given -> suggested (confidence)``;
* ``outliers.png`` and ``unusable.png``: the images titled with their label or kind and score.

Each grid shows the strongest findings first (``issues.csv``'s order), at most ``limit`` of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from lit_vision.auditing.findings import DUPLICATE_KINDS, LABEL, OUTLIER, QUALITY_KINDS, Finding, sort_key
from lit_vision.runs.plots import show_image

Images = Mapping[str, Any]  # split → (N, C, H, W) uint8 array-like
COLUMNS = 8


def _grid(cells: Sequence[tuple[np.ndarray, str]], title: str, path: Path, columns: int = COLUMNS) -> Path:
    rows = max(1, math.ceil(len(cells) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.75 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, label) in zip(axes.flat, cells):
        ax.axis("on")
        show_image(ax, image)
        ax.set_title(label, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _short(item: str) -> str:
    """A file as its class folder and name (``cat/0042.jpg``); ``<split>/<index>`` as is."""
    parts = Path(item).parts
    return "/".join(parts[-2:]) if len(parts) > 2 else item


def duplicate_cells(findings: Sequence[Finding], images: Images) -> list[tuple[np.ndarray, str]]:
    cells = []
    for f in findings:
        cells.append((np.asarray(images[f.split][f.index]), f"{f.split} {_short(f.item)}\n{f.kind[:5]} {f.score:.2f}"))
        cells.append((np.asarray(images[f.partner_split][f.partner_index]),
                      f"= {f.partner_split} {_short(f.partner)}"))
    return cells


def label_cells(findings: Sequence[Finding], images: Images) -> list[tuple[np.ndarray, str]]:
    return [(np.asarray(images[f.split][f.index]),
             f"{f.split} {_short(f.item)}\n{f.given} -> {f.suggested} ({f.confidence or 0:.2f})") for f in findings]


def single_cells(findings: Sequence[Finding], images: Images) -> list[tuple[np.ndarray, str]]:
    return [(np.asarray(images[f.split][f.index]), f"{f.split} {_short(f.item)}\n{f.given or f.kind} {f.score:.2f}")
            for f in findings]


#: file stem → (the kinds it shows, how its cells are drawn, its title)
GRIDS: dict[str, tuple[tuple[str, ...], Callable[..., list[tuple[np.ndarray, str]]], str]] = {
    "duplicates": (DUPLICATE_KINDS, duplicate_cells, "duplicates: the copy to drop | the copy kept"),
    "label_issues": ((LABEL,), label_cells, "likely label errors: given -> suggested (confidence)"),
    "outliers": ((OUTLIER,), single_cells, "outliers: label, distance to the nearest training images x median"),
    "unusable": (QUALITY_KINDS, single_cells, "unusable images: kind and score"),
}


def write_grids(findings: Sequence[Finding], images: Images, out: Path, limit: int) -> list[Path]:
    """One PNG per kind of finding present, the strongest ``limit`` findings each (pairs count as one)."""
    ordered = sorted(findings, key=sort_key)
    paths = []
    for stem, (kinds, cells, title) in GRIDS.items():
        chosen = [f for f in ordered if f.kind in kinds]
        if chosen:
            shown = chosen[:limit]
            paths.append(_grid(cells(shown, images), f"{title} ({len(shown)} of {len(chosen)})", out / f"{stem}.png"))
    return paths
