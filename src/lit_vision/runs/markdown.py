"""Markdown tables for the reports that the commands write (compare, sweep summaries, seed groups, reproduce)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    """A GitHub-flavoured table of text cells (no trailing newline); a ``|`` or line break inside a cell is escaped
    so that it cannot split its row."""

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(cell(c) for c in line) + " |" for line in lines]
    return "\n".join(out)
