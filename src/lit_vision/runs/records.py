"""A run dir's records: every file a run writes, named once, read and written here (no torch here).

Usage::

    run = RunDir(Path("outputs/horse_cnn/runs/<time>"))
    if run.finished:
        record = run.metrics()           # metrics.json, its checkpoint paths resolved
        config = run.config()            # .hydra/config.yaml, unresolved, plain containers
        rows = run.history()             # history.csv, one dict per epoch

Files (names relative to the run dir):

* ``metrics.json`` (:data:`METRICS_FILE`): the run's record, written by train/evaluate/xgb/baseline;
* ``history.csv``: one row per epoch, collapsed from Lightning's log ``metrics.csv``;
* ``predictions.csv``: one row per test image;
* ``.hydra/config.yaml``, ``.hydra/overrides.yaml``, ``.hydra/hydra.yaml``: what Hydra saved;
* ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``;
* ``operating_point.json``: a binary run's chosen threshold;
* ``error.json``: a failed sweep job's error; ``mlflow.json``: the run's MLflow ids;
* ``reproduce.json`` and ``reproduce.log``: ``python -m lit_vision.reproduce``'s manifest and log;
* ``plots/``.

One reader per format: :func:`~lit_vision.runs.formats.read_json`, :func:`~lit_vision.runs.formats.read_yaml`,
:func:`~lit_vision.runs.formats.read_csv`.

Portable paths: a record keeps no folder of the machine that wrote it. :func:`portable` writes a path inside the
project root (:func:`~lit_vision.runs.paths.project_root`) relative to it, and one inside the data root as
``${data_root}/<rest>``; :func:`resolve` turns both back into absolute paths on the reading machine. The metrics
record's checkpoint paths (:data:`PATH_KEYS`) are stored that way and resolved by :meth:`RunDir.metrics`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_vision.runs.formats import read_csv, read_json, read_yaml, write_json
from lit_vision.runs.history import read_history, write_history
from lit_vision.runs.paths import project_root

METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
LIGHTNING_LOG = "metrics.csv"
PREDICTIONS_FILE = "predictions.csv"
OPERATING_POINT_FILE = "operating_point.json"
ERROR_FILE = "error.json"
MLFLOW_FILE = "mlflow.json"
MANIFEST_FILE = "reproduce.json"
REPRODUCE_LOG = "reproduce.log"
HYDRA_DIR = ".hydra"
CONFIG_FILE, OVERRIDES_FILE, HYDRA_FILE = "config.yaml", "overrides.yaml", "hydra.yaml"
CHECKPOINT_DIR = "checkpoints"
BEST_CHECKPOINT, LAST_CHECKPOINT = "best.ckpt", "last.ckpt"
#: checkpoint names in the order a run's model is looked up: best, else last
CHECKPOINT_NAMES = (BEST_CHECKPOINT, LAST_CHECKPOINT)
PLOTS_DIR = "plots"

#: metrics.json keys that hold paths (stored portable, resolved when read)
PATH_KEYS = ("best_checkpoint", "resumed_from", "checkpoint", "source_checkpoint")
#: how a portable path names the data root
DATA_ROOT = "${data_root}"
#: how a portable command line names the Python interpreter that ran it
PYTHON = "python"


# --- one reader (and writer) per format ------------------------------------------------------------
def _inside(path: Path, root: Path) -> Path | None:
    try:
        return path.relative_to(root)
    except ValueError:
        return None


def portable(path: str | Path, data_root: str | Path | None = None) -> str:
    """``path`` as a record stores it: ``${data_root}/<rest>`` inside ``data_root``, relative inside the project
    root, else as given (a relative path stays relative: it already names no machine)."""
    text = str(path)
    if not os.path.isabs(text):
        return text
    absolute = Path(os.path.normpath(text))
    if data_root is not None and (rest := _inside(absolute, Path(os.path.normpath(resolve(data_root))))) is not None:
        return DATA_ROOT if rest == Path() else f"{DATA_ROOT}/{rest.as_posix()}"
    if (rest := _inside(absolute, project_root())) is not None:
        return rest.as_posix() or "."
    return text


def resolve(text: str | Path, data_root: str | Path | None = None) -> Path:
    """A stored path on this machine: ``${data_root}/…`` under ``data_root`` (required then), relative ones under
    the project root."""
    text = str(text)
    if text == DATA_ROOT or text.startswith(DATA_ROOT + "/"):
        if data_root is None:
            raise ValueError(f"{text}: a path under the data root, and no data root was given")
        return Path(resolve(data_root)) / text[len(DATA_ROOT) + 1:]
    path = Path(text).expanduser()
    return path if path.is_absolute() else Path(os.path.normpath(project_root() / path))


def portable_argv(argv: Sequence[str], data_root: str | Path | None = None) -> list[str]:
    """A command line as a record stores it: the interpreter as ``python``, every path argument and every
    ``key=<path>`` override :func:`portable`."""
    out = []
    for i, arg in enumerate(argv):
        if i == 0 and (arg == sys.executable or Path(arg).name.startswith("python")):
            out.append(PYTHON)
            continue
        key, eq, value = arg.partition("=")
        if eq and not key.startswith("-") and os.path.isabs(value):
            out.append(f"{key}={portable(value, data_root)}")
        else:
            out.append(portable(arg, data_root) if os.path.isabs(arg) else arg)
    return out


def resolve_argv(argv: Sequence[str], data_root: str | Path | None = None) -> list[str]:
    """:func:`portable_argv` undone: ``python`` → this interpreter, ``${data_root}/…`` → under ``data_root``.
    Relative paths stay relative: they are relative to the project root, where reproduce runs its commands."""
    out = []
    for i, arg in enumerate(argv):
        key, eq, value = arg.partition("=")
        if i == 0 and arg == PYTHON:
            out.append(sys.executable)
        elif eq and (value == DATA_ROOT or value.startswith(DATA_ROOT + "/")):
            out.append(f"{key}={resolve(value, data_root)}")
        else:
            out.append(arg)
    return out


def portable_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A metrics record with its :data:`PATH_KEYS` :func:`portable` (a copy)."""
    return {k: portable(v) if k in PATH_KEYS and isinstance(v, str) else v for k, v in record.items()}


def resolved_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A stored metrics record with its :data:`PATH_KEYS` resolved to absolute paths here (a copy)."""
    return {k: str(resolve(v)) if k in PATH_KEYS and isinstance(v, str) else v for k, v in record.items()}


# --- a run dir -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunDir:
    """A run's folder: where each of its files is, and their contents."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def name(self) -> str:
        return self.path.name

    # files
    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def history_file(self) -> Path:
        return self.path / HISTORY_FILE

    @property
    def lightning_log(self) -> Path:
        """Lightning's CSV log (step and epoch rows), collapsed into :attr:`history_file`."""
        return self.path / LIGHTNING_LOG

    @property
    def predictions_file(self) -> Path:
        return self.path / PREDICTIONS_FILE

    @property
    def hydra_dir(self) -> Path:
        return self.path / HYDRA_DIR

    @property
    def config_file(self) -> Path:
        return self.hydra_dir / CONFIG_FILE

    @property
    def overrides_file(self) -> Path:
        return self.hydra_dir / OVERRIDES_FILE

    @property
    def hydra_file(self) -> Path:
        return self.hydra_dir / HYDRA_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoint_dir / BEST_CHECKPOINT

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / LAST_CHECKPOINT

    @property
    def operating_point_file(self) -> Path:
        return self.path / OPERATING_POINT_FILE

    @property
    def error_file(self) -> Path:
        return self.path / ERROR_FILE

    @property
    def mlflow_file(self) -> Path:
        return self.path / MLFLOW_FILE

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def reproduce_log(self) -> Path:
        return self.path / REPRODUCE_LOG

    @property
    def plots_dir(self) -> Path:
        return self.path / PLOTS_DIR

    # states
    @property
    def finished(self) -> bool:
        """The run wrote its metrics record."""
        return self.metrics_file.is_file()

    @property
    def failed(self) -> bool:
        """A sweep job recorded its error."""
        return self.error_file.is_file()

    @property
    def has_config(self) -> bool:
        return self.config_file.is_file()

    def checkpoint(self) -> Path | None:
        """``checkpoints/best.ckpt``, else ``last.ckpt``, else None."""
        return next((p for p in (self.best_checkpoint, self.last_checkpoint) if p.is_file()), None)

    # readers
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` with its checkpoint paths resolved on this machine (FileNotFoundError when absent)."""
        return resolved_record(read_json(self.metrics_file))

    def history(self) -> list[dict[str, float]]:
        """``history.csv`` as one dict of floats per epoch (empty cells dropped); empty without the file."""
        return read_history(self.history_file)

    def write_history(self) -> list[dict[str, float]]:
        """``history.csv`` from Lightning's log ``metrics.csv`` (one row per epoch); the rows written."""
        return write_history(self.lightning_log, self.history_file)

    def predictions(self) -> list[dict[str, str]]:
        """``predictions.csv`` rows as written (strings); empty without the file."""
        return read_csv(self.predictions_file)

    def config(self) -> dict[str, Any] | None:
        """``.hydra/config.yaml``, unresolved, as plain containers; None when the run has none."""
        return (read_yaml(self.config_file) or {}) if self.has_config else None

    def overrides(self) -> list[str]:
        """``.hydra/overrides.yaml``: the command-line overrides; empty without the file."""
        return [str(o) for o in read_yaml(self.overrides_file) or []] if self.overrides_file.is_file() else []

    def command(self) -> str | None:
        """The Hydra config the run was composed from (``train``, ``xgb`` …: ``hydra.job.config_name``)."""
        if not self.hydra_file.is_file():
            return None
        return ((read_yaml(self.hydra_file) or {}).get("hydra", {}).get("job", {}) or {}).get("config_name")

    def operating_point(self) -> dict[str, Any] | None:
        return read_json(self.operating_point_file) if self.operating_point_file.is_file() else None

    def error(self) -> dict[str, Any] | None:
        return read_json(self.error_file) if self.failed else None

    def manifest(self) -> dict[str, Any] | None:
        """``reproduce.json`` as stored (portable command lines); None when absent."""
        return read_json(self.manifest_file) if self.manifest_file.is_file() else None

    # writers
    def write_metrics(self, record: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> Path:
        """``metrics.json``, its :data:`PATH_KEYS` :func:`portable`; ``default`` converts what JSON cannot hold."""
        write_json(self.metrics_file, portable_record(record), default)
        return self.metrics_file

    def write_operating_point(self, point: Mapping[str, Any], default: Callable[[Any], Any] | None = None) -> Path:
        write_json(self.operating_point_file, point, default)
        return self.operating_point_file

    def write_error(self, error: Mapping[str, Any]) -> Path:
        write_json(self.error_file, error)
        return self.error_file

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        """``reproduce.json``, atomically (a killed reproduce leaves the previous manifest)."""
        write_json(self.manifest_file, manifest, atomic=True)
        return self.manifest_file
