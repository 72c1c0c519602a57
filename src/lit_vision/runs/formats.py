"""The file formats of run records, one reader (and writer) each: JSON, YAML (as Hydra saved it), CSV.

No torch here, and OmegaConf only when a YAML file is read (the torch-free server never reads one).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_json(path: Path, record: Any, default: Callable[[Any], Any] | None = None, atomic: bool = False) -> None:
    """``record`` as indented JSON; ``atomic``: through a temporary file, so a killed writer leaves the old one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=2, default=default)
    if not atomic:
        path.write_text(text)
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_yaml(path: Path) -> Any:
    """A YAML file as plain containers, interpolations (``${...}``) left unresolved, as Hydra saved them."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def read_csv(path: Path) -> list[dict[str, str]]:
    """A CSV file with a header as a list of dicts of strings; empty when the file is absent."""
    if not Path(path).is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- portable paths --------------------------------------------------------------------------------
