"""``summary.md`` (people) and ``summary.json`` (scripts): counts per kind and split, the settings, the time."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lit_vision.auditing.findings import KINDS, Finding, counts, leaked
from lit_vision.auditing.settings import AuditSettings
from lit_vision.runs.markdown import markdown_table

SUMMARY_MD, SUMMARY_JSON = "summary.md", "summary.json"


def summary_record(findings: Sequence[Finding], sizes: Mapping[str, int], settings: AuditSettings,
                   seconds: Mapping[str, float], describe: Mapping[str, Any]) -> dict[str, Any]:
    per_kind = counts(findings, list(sizes))
    return {"data": dict(describe), "sizes": dict(sizes), "counts": per_kind,
            "images_flagged": {split: len({f.item for f in findings if f.split == split}) for split in sizes},
            "leaked": {split: len(leaked(findings, split)) for split in sizes if split != "train"},
            "settings": _plain(asdict(settings)), "seconds": dict(seconds), "total_seconds": sum(seconds.values())}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def summary_markdown(record: Mapping[str, Any]) -> str:
    splits = list(record["sizes"])
    rows = [[kind, *(record["counts"][kind][s] for s in splits)] for kind in KINDS]
    rows.append(["images flagged", *(record["images_flagged"][s] for s in splits)])
    rows.append(["images", *(record["sizes"][s] for s in splits)])
    lines = [f"# Audit of {record['data'].get('name', 'the data')}", "",
             "Findings per kind and split (`issues.csv` lists each; the pictures show the strongest):", "",
             markdown_table(["kind", *splits], rows), ""]
    for split, n in record["leaked"].items():
        lines.append(f"- {split} images with an exact or near duplicate in train: **{n}** of {record['sizes'][split]}"
                     f" ({100 * n / max(record['sizes'][split], 1):.2f}%)")
    lines += ["", "## Time", "", markdown_table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in
                                                                        record["seconds"].items()]),
              "", f"Total: {record['total_seconds'] / 60:.1f} min.", "", "## Settings", "", "```json",
              json.dumps(record["settings"], indent=2), "```", "", "## Data", "", "```json",
              json.dumps(record["data"], indent=2), "```", ""]
    return "\n".join(lines)


def write_summary(out: Path, findings: Sequence[Finding], sizes: Mapping[str, int], settings: AuditSettings,
                  seconds: Mapping[str, float], describe: Mapping[str, Any]) -> list[Path]:
    record = summary_record(findings, sizes, settings, seconds, describe)
    (out / SUMMARY_JSON).write_text(json.dumps(record, indent=2))
    (out / SUMMARY_MD).write_text(summary_markdown(record))
    return [out / SUMMARY_MD, out / SUMMARY_JSON]
