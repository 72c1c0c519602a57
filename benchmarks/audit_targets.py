"""The audit's targets, measured on finished audits of the notebook datasets: prints one table.

    python benchmarks/audit_targets.py --cifar10 outputs/audit/runs/<cifar10 audit> \\
        [--cifar10-quick <duplicates+quality audit>] [--fashion <fashion_mnist audit>] [--json out.json] \\
        [--counts <audit> ...]   # also the findings per kind and split of any audits, as a markdown table

CIFAR-10 (``data=cifar10 data.root=../shared/datasets/cifar10-jpeg``), against published lists used only here, as an
evaluation (``benchmarks/reference/README.md``):

* ciFAIR (Barz & Denzler 2020): the 286 test images with a near-duplicate in the training set. Recall = the share
  of them the audit lists as an exact or near duplicate of a training image; target >= 80%, with at most 2 x 286
  test images listed so;
* labelerrors.com (Northcutt et al. 2021): the 54 test label errors confirmed by Mechanical Turk (fewer than 3 of 5
  workers chose the given label alone, among the 275 images shown to them). Recall = the share of them among the
  audit's 275 highest-ranked test label issues; target >= 50%;
* time: the whole audit <= 45 min, duplicates and quality alone <= 3 min, on the 2-core CPU.

Fashion-MNIST: exact duplicates across its splits = 0 (its 2017 fix).

The shared ``cifar10-jpeg/test/<class>/NNNN.jpg`` holds the test images in their original order within each class:
original test index i is ``<class labels[i]>/<number of earlier indices with that class>.jpg``.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from lit_vision.data.sources import CIFAR10_CLASSES
from lit_vision.reproduction.machine import cpu_model

REFERENCE = Path(__file__).resolve().parent / "reference"
CIFAIR_TEST_WITH_TRAIN_DUPLICATE = 286
LABEL_ERRORS_SHOWN = 275


def original_test_index() -> dict[str, int]:
    """``<class>/<NNNN>.jpg`` → the image's index in CIFAR-10's original test batch."""
    labels = np.load(REFERENCE / "label_errors_cifar10_test_original_labels.npy").astype(int)
    seen = [0] * len(CIFAR10_CLASSES)
    out = {}
    for i, label in enumerate(labels):
        out[f"{CIFAR10_CLASSES[label]}/{seen[label]:04d}.jpg"] = i
        seen[label] += 1
    return out


def read_issues(audit: Path) -> list[dict[str, str]]:
    with open(audit / "issues.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_index(item: str, lookup: Mapping[str, int]) -> int:
    parts = Path(item).parts
    return lookup["/".join(parts[-2:])]


def cifair_recall(rows: list[dict[str, str]], lookup: Mapping[str, int]) -> dict[str, Any]:
    with open(REFERENCE / "cifair_duplicates_cifar10.csv", newline="") as f:
        published = {int(r["TestID"]) for r in csv.DictReader(f)}
    flagged = {test_index(r["item"], lookup) for r in rows
               if r["split"] == "test" and r["partner_split"] == "train"
               and r["kind"] in ("exact_duplicate", "near_duplicate")}
    found = len(published & flagged)
    return {"published": len(published), "flagged": len(flagged), "found": found,
            "recall": found / len(published), "flagged_per_published": len(flagged) / len(published)}


def label_error_recall(rows: list[dict[str, str]], lookup: Mapping[str, int]) -> dict[str, Any]:
    shown = json.loads((REFERENCE / "label_errors_cifar10_mturk.json").read_text())
    confirmed = {e["id"] for e in shown if e["mturk"]["given"] < 3}
    ranked = [r for r in rows if r["split"] == "test" and r["kind"] == "label_issue"]
    ranked.sort(key=lambda r: float(r["score"]))  # lowest self-confidence first
    top = {test_index(r["item"], lookup) for r in ranked[:LABEL_ERRORS_SHOWN]}
    found = len(confirmed & top)
    return {"confirmed": len(confirmed), "flagged": len(ranked), "top": len(top), "found": found,
            "recall": found / len(confirmed)}


def published_probabilities_recall() -> dict[str, Any]:
    """The same rule (lit_vision.auditing.label_issues) on the cross-validated probabilities the label-errors paper
    published: how many confirmed errors its top 275 holds when the net is that strong."""
    from lit_vision.auditing.label_issues import find_label_issues

    probs = np.load(REFERENCE / "label_errors_cifar10_test_pyx.npy").astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)  # stored as float16
    labels = np.load(REFERENCE / "label_errors_cifar10_test_original_labels.npy").astype(np.int64)
    shown = json.loads((REFERENCE / "label_errors_cifar10_mturk.json").read_text())
    confirmed = {e["id"] for e in shown if e["mturk"]["given"] < 3}
    issues = find_label_issues(labels, probs)
    top = set(issues.ranking[:LABEL_ERRORS_SHOWN].tolist())
    return {"accuracy": float((probs.argmax(axis=1) == labels).mean()), "flagged": int(issues.mask.sum()),
            "found": len(top & confirmed), "confirmed": len(confirmed),
            "shown": len(top & {e["id"] for e in shown})}


def summary(audit: Path) -> dict[str, Any]:
    """An audit's summary.json (``audit`` its folder, or the file itself)."""
    return json.loads((audit if audit.suffix == ".json" else audit / "summary.json").read_text())


def measure(args: argparse.Namespace) -> list[tuple[str, str, str, bool | None]]:
    """(target, measured, goal, met) rows."""
    out: list[tuple[str, str, str, bool | None]] = []
    if args.cifar10:
        rows, lookup = read_issues(args.cifar10), original_test_index()
        dup = cifair_recall(rows, lookup)
        out.append(("CIFAR-10: ciFAIR test images with a train near-duplicate found",
                    f"{dup['found']}/{dup['published']} = {dup['recall']:.1%}", ">= 80%", dup["recall"] >= 0.8))
        out.append(("CIFAR-10: test images flagged as train duplicates",
                    f"{dup['flagged']} = {dup['flagged_per_published']:.2f} x 286", "<= 2 x 286",
                    dup["flagged"] <= 2 * CIFAIR_TEST_WITH_TRAIN_DUPLICATE))
        lab = label_error_recall(rows, lookup)
        out.append(("CIFAR-10: confirmed test label errors among the top 275 label issues",
                    f"{lab['found']}/{lab['confirmed']} = {lab['recall']:.1%} ({lab['flagged']} flagged)", ">= 50%",
                    lab["recall"] >= 0.5))
        ref = published_probabilities_recall()
        out.append(("CIFAR-10: the same rule on the paper's published probabilities (not a target: a check of "
                    "the rule)", f"{ref['found']}/{ref['confirmed']} (net accuracy {ref['accuracy']:.1%}; "
                    f"{ref['flagged']} flagged, {ref['shown']} of the 275 shown)", "", None))
        minutes = summary(args.cifar10_timed or args.cifar10)["total_seconds"] / 60
        out.append(("CIFAR-10: whole audit (60k images, embeddings, cross-validated label issues)",
                    f"{minutes:.1f} min", "<= 45 min", minutes <= 45))
    if args.cifar10_quick:
        minutes = summary(args.cifar10_quick)["total_seconds"] / 60
        out.append(("CIFAR-10: duplicates and quality alone", f"{minutes:.1f} min", "<= 3 min", minutes <= 3))
    if args.fashion:
        exact = [r for r in read_issues(args.fashion) if r["kind"] == "exact_duplicate" and r["split"] != r[
            "partner_split"]]
        out.append(("Fashion-MNIST: exact duplicates across splits", str(len(exact)), "= 0", not exact))
    return out


def counts_table(audits: list[Path]) -> str:
    """docs/audit.md's table: findings per kind and split of each audit (the quality kinds summed as "unusable";
    each audit's summary.md has them one by one), its images, train leaks and minutes."""
    from lit_vision.auditing.findings import QUALITY_KINDS
    from lit_vision.runs.markdown import markdown_table

    kinds = ("exact_duplicate", "near_duplicate", "label_issue", "outlier")
    rows = []
    for audit in audits:
        record = summary(audit)
        counts = record["counts"]
        for split, size in record["sizes"].items():
            unusable = sum(counts[k][split] for k in QUALITY_KINDS)
            rows.append([record["data"].get("name", audit.name), split, f"{size:,}",
                         *(f"{counts[k][split]:,}" for k in kinds), f"{unusable:,}",
                         f"{record['leaked'].get(split, '')}", f"{record['total_seconds'] / 60:.1f}"])
    return markdown_table(["data", "split", "images", "exact dup.", "near dup.", "label issues", "outliers",
                           "unusable", "in test/val with a train copy", "audit min"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cifar10", type=Path, help="a whole audit of data=cifar10 (cifar10-jpeg)")
    parser.add_argument("--cifar10-timed", type=Path, help="the audit (or its summary.json's folder) whose time to "
                        "report, when --cifar10 was resumed from it with other settings (default: --cifar10)")
    parser.add_argument("--cifar10-quick", type=Path, help="an audit of data=cifar10 with "
                        "audit.checks=[duplicates,quality]")
    parser.add_argument("--fashion", type=Path, help="an audit of data=fashion_mnist")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--counts", type=Path, nargs="*", default=[], help="audits whose counts to print as one "
                        "markdown table (docs/audit.md)")
    args = parser.parse_args()
    if args.counts:
        print(counts_table(args.counts))
    rows = measure(args)
    table = Table(title=f"audit targets ({cpu_model()})")
    for column in ("target", "measured", "goal", "met"):
        table.add_column(column)
    for target, measured, goal, met in rows:
        table.add_row(target, measured, goal, {True: "yes", False: "NO", None: ""}[met])
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps([dict(zip(("target", "measured", "goal", "met"), r)) for r in rows],
                                        indent=2))


if __name__ == "__main__":
    main()
