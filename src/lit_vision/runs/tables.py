"""The tables of run records that compare, the sweep summary and reproduce write (no torch here).

Each of them collects its runs its own way (run dirs and globs, a sweep's jobs, a row's seeds), then turns every
record into cells with :func:`metric_cells` (metrics by key, dotted keys into nested records, the training-time
cells of :func:`~lit_vision.runs.paths.timing_cells`) and writes rows of cells with :func:`markdown_rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from lit_vision.runs.markdown import markdown_table
from lit_vision.runs.paths import timing_cells


def lookup(record: Mapping[str, Any], key: str) -> Any:
    """``record[key]``, or the dotted path ``a.b.c`` into nested records; None when absent."""
    if key in record:
        return record[key]
    value: Any = record
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def metric_cells(record: Mapping[str, Any], columns: Sequence[str] | Mapping[str, str],
                 timing: bool = True) -> dict[str, Any]:
    """A record's cells: each column's value (``columns``: keys, or column → key, dotted keys allowed; None when
    absent), then, with ``timing``, its training-time cells."""
    keys = columns if isinstance(columns, Mapping) else {c: c for c in columns}
    cells = {column: lookup(record, key) for column, key in keys.items()}
    return cells | timing_cells(record) if timing else cells


def markdown_rows(header: Sequence[str], rows: Iterable[Mapping[str, Any]], fmt: Callable[[Any], str]) -> str:
    """Rows of cells (dicts keyed by column) as a markdown table of ``header``'s columns, each cell through ``fmt``."""
    return markdown_table(header, ([fmt(r.get(k)) for k in header] for r in rows))
